//! SQLite as a target: its VFS over the harness [`engine::storage::Storage`].

pub mod vfs;
