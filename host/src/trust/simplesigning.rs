//! The payload cosign signs: a "simple signing" JSON document naming the
//! image by digest. Only `critical` binds; `optional` is unsigned-in-spirit
//! metadata and is ignored, as cosign does.

use serde::Deserialize;

pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const TYPE: &str = "cosign container image signature";

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Does the signed payload name `digest` (`sha256:<hex>`)? The error says
/// what the payload claims instead.
pub fn check(payload: &[u8], digest: &str) -> Result<(), String> {
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed payload is not a cosign simple-signing document: {e}"))?;
    if p.critical.kind != TYPE {
        return Err(format!(
            "the signed payload's critical.type is {:?}, not {TYPE:?}",
            p.critical.kind
        ));
    }
    if p.critical.image.digest != digest {
        return Err(format!(
            "the signed payload names image {}, not {digest} (a signature copied from another image?)",
            p.critical.image.digest
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaa";

    #[test]
    fn accepts_the_digest_it_names_only() {
        let good = br#"{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"sha256:aaaa"},"type":"cosign container image signature"},"optional":null}"#;
        assert!(check(good, D).is_ok());
        let err = check(good, "sha256:bbbb").expect_err("other digest");
        assert!(err.contains("names image sha256:aaaa"), "{err}");
        let wrong_type = br#"{"critical":{"identity":{},"image":{"docker-manifest-digest":"sha256:aaaa"},"type":"atomic container signature"}}"#;
        assert!(check(wrong_type, D)
            .expect_err("type")
            .contains("critical.type"));
        assert!(check(b"[]", D).is_err());
        assert!(check(b"", D).is_err());
    }
}
