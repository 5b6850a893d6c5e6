// Generated with the tables: the linux-libc-dev headers they were made from.

/// The uapi headers version the checked-in tables were generated from.
pub const HEADERS_VERSION: &str = "6.1.187";
