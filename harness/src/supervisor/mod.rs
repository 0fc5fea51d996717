//! (lands with the torture-loop work)
