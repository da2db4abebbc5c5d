//! Is it text we may rewrite, or bytes we must not touch?

/// Archives the bundle must look into or leave out, never copy unredacted:
/// gzip, zip, tar (ustar magic at 257), bzip2, xz, zstd, 7z.
pub fn is_archive(data: &[u8]) -> bool {
    const MAGIC: [&[u8]; 7] = [
        &[0x1f, 0x8b],
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
        &[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c],
    ];
    MAGIC.iter().any(|m| data.starts_with(m)) || data.get(257..262).is_some_and(|m| m == b"ustar")
}

/// Binary when the first 8 KiB hold a NUL byte or are not UTF-8 (a cut
/// multi-byte character at the 8 KiB edge is allowed). Rewriting such
/// bytes could corrupt them, so the caller copies or leaves them out.
pub fn is_binary(data: &[u8]) -> bool {
    let head = &data[..data.len().min(8192)];
    if memchr::memchr(0, head).is_some() {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => false,
        // error_len None: the input ended inside a character (our cut).
        Err(e) => e.error_len().is_some(),
    }
}
