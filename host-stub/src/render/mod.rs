//! Presentation: text tables, the live view, charts and the Prometheus
//! exposition. Nothing here decides anything.

pub mod chart;
pub mod cluster_chart;
pub mod cluster_table;
pub mod metrics;
pub mod sim_table;
pub mod table;
pub mod text_table;
