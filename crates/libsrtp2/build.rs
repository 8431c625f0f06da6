//! Finds the system libsrtp2 (Debian `libsrtp2-dev`) or fails: a peer that is missing is an
//! error, never a skipped test.
fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("2.0")
        .probe("libsrtp2")
    {
        panic!(
            "libsrtp2 not found via pkg-config ({e}); install it: apt-get install libsrtp2-dev pkg-config"
        );
    }
}
