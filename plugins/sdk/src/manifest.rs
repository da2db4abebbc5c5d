//! Declaring the manifest in code. `manifest!` writes it as TOML into the
//! `opshost-manifest` custom section, where the host reads it without
//! running the plugin. The version is the plugin crate's own.

/// Copy a string into a fixed-size array at compile time.
#[doc(hidden)]
pub const fn to_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declare the plugin's identity and every grant it requests, with a reason.
/// Reasons are TOML literal strings: they may not contain `'''`.
#[macro_export]
macro_rules! manifest {
    (
        name: $name:literal,
        vendor: $vendor:literal,
        description: $description:literal,
        applies_to: $applies_to:literal,
        min_host: $min_host:literal,
        requests: [ $( ($grant:literal, $reason:literal) ),* $(,)? ] $(,)?
    ) => {
        const __OPSHOST_MANIFEST_TEXT: &str = concat!(
            "name = \"", $name, "\"\n",
            "vendor = \"", $vendor, "\"\n",
            "version = \"", env!("CARGO_PKG_VERSION"), "\"\n",
            "description = '''", $description, "'''\n",
            "applies_to = \"", $applies_to, "\"\n",
            "min_host = \"", $min_host, "\"\n",
            $( "[[request]]\ngrant = \"", $grant, "\"\nreason = '''", $reason, "'''\n", )*
        );
        #[used]
        #[link_section = "opshost-manifest"]
        static __OPSHOST_MANIFEST: [u8; __OPSHOST_MANIFEST_TEXT.len()] =
            $crate::manifest::to_bytes(__OPSHOST_MANIFEST_TEXT);
    };
}
