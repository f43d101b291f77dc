//! The text tables of every command, through one table crate
//! (`comfy-table`): columns as wide as their widest cell, so a long VM name
//! widens its column instead of breaking the table. One look for all of
//! them: a header, a rule under it, the first column left-aligned, the
//! numbers right-aligned, two spaces between columns (the style's one-space
//! delimiter and one of padding).

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};

/// Header rule only: every other border and line is left out.
const STYLE: &str = "     --            ";

/// A table with these column headers.
pub fn new(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(STYLE)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    for (i, column) in t.column_iter_mut().enumerate() {
        if i == 0 {
            column.set_padding((0, 1));
        } else {
            column.set_cell_alignment(CellAlignment::Right);
            column.set_padding((1, 0));
        }
    }
    t
}

/// Left-aligns column `i` (a text column among numbers).
pub fn left(t: &mut Table, i: usize) {
    if let Some(c) = t.column_mut(i) {
        c.set_cell_alignment(CellAlignment::Left);
    }
}

/// The table as lines, each ending in a newline, without trailing blanks.
pub fn render(t: &Table) -> String {
    t.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

/// A table whose columns come in titled groups, `|` between the groups,
/// the titles centred over their columns (the simulators' tables).
pub struct Grouped {
    table: Table,
    /// Each group's title and number of columns.
    groups: Vec<(String, usize)>,
}

/// A grouped table: `(title, [header])` per group; the first column of the
/// first group is left-aligned.
pub fn grouped(groups: &[(&str, &[&str])]) -> Grouped {
    let mut header = Vec::new();
    for (i, (_, cols)) in groups.iter().enumerate() {
        if i > 0 {
            header.push("|");
        }
        header.extend_from_slice(cols);
    }
    Grouped {
        table: new(&header),
        groups: groups
            .iter()
            .map(|(t, cols)| (t.to_string(), cols.len()))
            .collect(),
    }
}

impl Grouped {
    /// Adds a row: the cells of every group in order, without separators.
    pub fn add_row(&mut self, cells: Vec<String>) {
        let mut cells = cells.into_iter();
        let mut row = Vec::new();
        for (i, (_, n)) in self.groups.iter().enumerate() {
            if i > 0 {
                row.push("|".to_string());
            }
            row.extend(cells.by_ref().take(*n));
        }
        self.table.add_row(row);
    }

    /// The title line, then the table.
    pub fn render(&self) -> String {
        // Each column is as wide as its widest cell plus its padding, and
        // the columns after the first have the one-space delimiter before.
        let widths: Vec<usize> = self
            .table
            .column_max_content_widths()
            .iter()
            .enumerate()
            .map(|(i, w)| usize::from(*w) + if i == 0 { 1 } else { 2 })
            .collect();
        let mut widths = widths.into_iter();
        let mut titles = String::new();
        for (i, (title, n)) in self.groups.iter().enumerate() {
            if i > 0 {
                let sep = widths.next().unwrap_or(3);
                titles.push_str(&format!("{:>sep$}", "|"));
            }
            let w: usize = widths.by_ref().take(*n).sum();
            titles.push_str(&format!("{title:^w$}"));
        }
        format!("{}\n{}", titles.trim_end(), render(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_widen_their_column() {
        let mut t = new(&["VM", "config", "state"]);
        left(&mut t, 2);
        t.add_row(["a-very-long-vm-name-indeed", "512", "running"]);
        t.add_row(["db", "2048", "LOST"]);
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("VM ") && lines[1].starts_with("---"),
            "{text}"
        );
        assert!(lines[2].starts_with("a-very-long-vm-name-indeed"), "{text}");
        // Numbers right-aligned: "512" ends where "2048" ends.
        let end = |l: &str, s: &str| l.find(s).map(|i| i + s.len());
        assert_eq!(end(lines[2], "512"), end(lines[3], "2048"), "{text}");
        // Text left-aligned.
        assert_eq!(lines[2].find("running"), lines[3].find("LOST"), "{text}");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["a-very-long-vm-name-indeed", "512", "running"]
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn group_titles_sit_over_their_columns() {
        let mut t = grouped(&[("", &["policy"]), ("time in state, %", &["high", "low"])]);
        t.add_row(vec![
            "a-long-policy-name".into(),
            "7.4".into(),
            "59.2".into(),
        ]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // The separator is at the same place on every line.
        let bar = lines[0].find('|');
        assert!(bar.is_some(), "{text}");
        assert_eq!(lines[1].find('|'), bar, "{text}");
        assert_eq!(lines[3].find('|'), bar, "{text}");
        assert!(lines[0].contains("time in state, %"), "{text}");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["a-long-policy-name", "|", "7.4", "59.2"]
        );
    }
}
