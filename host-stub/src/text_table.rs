//! The text tables of every command, through one table crate
//! (`comfy-table`): columns as wide as their widest cell, so a long VM name
//! widens its column instead of breaking the table. One look for all of
//! them: a header, a rule under it, the first column left-aligned, the
//! numbers right-aligned, two spaces between columns.

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
}
