//! Reading bundles: opening a zip, a folder or one CSV safely (`bundle`), the streaming record reader
//! (`csvread`), `manifest.csv` (`manifest`), and the rows of a validated bundle by column name, for planning
//! (`rows`).

pub mod bundle;
pub mod csvread;
pub mod manifest;
pub mod rows;
