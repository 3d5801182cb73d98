//! What several test files share. Each test file uses part of it.
#![allow(dead_code)]

pub mod provider;
