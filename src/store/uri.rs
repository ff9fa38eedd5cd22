//! PLACEHOLDER — being written: tracking URIs.
#![allow(missing_docs)]
/// A parsed tracking URI.
#[derive(Debug)]
pub enum TrackingUri {}
/// Opens the store a URI names.
pub fn open_store() {}
