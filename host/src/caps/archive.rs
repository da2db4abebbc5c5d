//! tar and tar.gz archives inside a granted directory, packed and read by
//! the host so that large members (a database dump) never cross the
//! sandbox. Every member is hashed as it passes, so a plugin can hold an
//! archive against the checksums in the manifest it carries.
//!
//! These functions block (they read and write whole files): call them from
//! `spawn_blocking`.

use std::collections::HashSet;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::fs::Dir;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::fs::AtomicFile;
use super::CapError;

/// More members than this is not a backup but a tar bomb of small files.
const MAX_MEMBERS: usize = 10_000;
const CHUNK: usize = 256 * 1024;
/// How often (in bytes) the progress callback hears of the work done.
const REPORT_EVERY: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Where a new member's bytes come from.
pub enum Source {
    /// A file in the directory, at a path already checked by the caller.
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Called with the bytes handled so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Copy `from` into `to`, hashing on the way; the size and hex SHA-256.
fn copy_hashed(
    from: &mut dyn Read,
    to: &mut dyn Write,
    done_before: u64,
    progress: Progress<'_>,
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut size, mut reported) = (0u64, 0u64);
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        size += n as u64;
        if size - reported >= REPORT_EVERY {
            reported = size;
            progress(done_before + size);
        }
    }
    progress(done_before + size);
    Ok((size, hex::encode(hasher.finalize())))
}

/// A member's name as the archive should hold it: relative, forward
/// slashes, no `.`/`..` components, no leading `./`.
fn member_name(name: &str) -> Result<String, CapError> {
    let trimmed = name.trim_start_matches("./");
    // By the string, not `Path::components`, which quietly drops `.`.
    let clean = !trimmed.contains('\0')
        && !trimmed.contains('\\')
        && trimmed
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if clean {
        Ok(trimmed.to_string())
    } else {
        Err(CapError::Invalid(format!(
            "archive member name {name:?} must be a relative path without '.' or '..'"
        )))
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Pack `members` into a gzip'd tar at `target`, atomically: the archive is
/// written to a temp file, fsynced, read back and compared member by member
/// before it is renamed into place.
pub fn pack(
    dir: &Dir,
    target: &Path,
    members: Vec<(String, Source)>,
    compress: bool,
    progress: Progress<'_>,
) -> Result<Vec<Member>, CapError> {
    let mut seen = HashSet::new();
    let mut named = Vec::with_capacity(members.len());
    for (name, source) in members {
        let name = member_name(&name)?;
        if !seen.insert(name.clone()) {
            return Err(CapError::Invalid(format!(
                "archive member {name:?} is named twice"
            )));
        }
        named.push((name, source));
    }
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut file = AtomicFile::create(dir, target)?;
    let level = if compress {
        Compression::fast()
    } else {
        Compression::none()
    };
    let out = BufWriter::with_capacity(1 << 20, file.std_handle()?);
    let mut tar = tar::Builder::new(GzEncoder::new(out, level));
    let mut written = Vec::with_capacity(named.len());
    let mut dirs = HashSet::new();
    let mut done = 0u64;
    for (name, source) in named {
        // Directory entries for the parents, as `tar czf` would write them.
        for parent in Path::new(&name).ancestors().skip(1) {
            let parent = parent.to_string_lossy();
            if parent.is_empty() || !dirs.insert(parent.to_string()) {
                continue;
            }
            let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
            tar.append_data(&mut h, format!("{parent}/"), io::empty())?;
        }
        let (mut reader, size): (Box<dyn Read>, u64) = match source {
            Source::File(path) => {
                let f = dir
                    .open(&path)
                    .map_err(|e| CapError::from(e).context(&path.to_string_lossy()))?;
                let size = f.metadata()?.len();
                (Box::new(f.into_std().take(size)), size)
            }
            Source::Bytes(data) => {
                let size = data.len() as u64;
                (Box::new(io::Cursor::new(data)), size)
            }
        };
        let mut h = header(tar::EntryType::Regular, size, 0o644, mtime);
        h.set_path(&name)
            .map_err(|e| CapError::Invalid(format!("archive member {name:?}: {e}")))?;
        h.set_cksum();
        // The header first, then the bytes through the hasher, then padding
        // (what `Builder::append` does, with a hash on the way).
        let sink = tar.get_mut();
        sink.write_all(h.as_bytes())?;
        let (copied, sha256) = copy_hashed(&mut reader, sink, done, progress)?;
        if copied != size {
            return Err(CapError::Failed(format!(
                "{name}: the file changed size while it was packed ({size} -> {copied} bytes)"
            )));
        }
        let pad = (512 - (size % 512)) % 512;
        sink.write_all(&vec![0u8; pad as usize])?;
        done += size;
        written.push(Member { name, size, sha256 });
    }
    let out = tar.into_inner()?.finish()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let read_back = members_of(file.std_handle_from_start()?, &|_| {})
        .map_err(|e| e.context("the archive just written cannot be read back"))?;
    if read_back != written {
        return Err(CapError::Failed(
            "the archive just written does not read back as written: not kept".into(),
        ));
    }
    file.commit()?;
    Ok(written)
}

/// A gzip stream may inflate to at most this many times its size (and at
/// least 1 GiB): a dump is compressed already, so a real backup is near
/// 1:1, and a gzip bomb must not fill the disk or run for hours.
const MAX_INFLATION: u64 = 64;

/// Errors once more than `left` bytes have come through.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::other(format!(
                "it inflates to more than {MAX_INFLATION} times its size (a gzip bomb?)"
            ))
        })?;
        Ok(n)
    }
}

/// The file's bytes, un-gzipped when they start with the gzip magic.
fn open_stream(mut file: std::fs::File) -> io::Result<Box<dyn Read>> {
    let cap = file
        .metadata()?
        .len()
        .saturating_mul(MAX_INFLATION)
        .max(1 << 30);
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        let n = file.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let whole = head.chain(BufReader::with_capacity(1 << 20, file));
    Ok(if magic[..got] == [0x1f, 0x8b] {
        Box::new(Capped {
            inner: MultiGzDecoder::new(whole),
            left: cap,
        })
    } else {
        Box::new(whole)
    })
}

fn unreadable(e: io::Error) -> CapError {
    CapError::Failed(format!(
        "not a readable tar or tar.gz archive (truncated or corrupt?): {e}"
    ))
}

/// Walk the archive's regular files; `visit` gets each one's name and
/// contents. The rest of the stream is read to its end afterwards so the
/// gzip checksum at the end is verified too.
fn walk(
    file: std::fs::File,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<(u64, String), CapError>,
) -> Result<Vec<Member>, CapError> {
    let mut archive = tar::Archive::new(open_stream(file).map_err(unreadable)?);
    let mut found = Vec::new();
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if found.len() == MAX_MEMBERS {
            return Err(CapError::Failed(format!(
                "the archive holds more than {MAX_MEMBERS} files: not a backup"
            )));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = raw.trim_start_matches("./").to_string();
        let (size, sha256) = visit(&name, &mut entry)?;
        if size != entry.header().size().unwrap_or(size) {
            return Err(unreadable(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} is cut short"),
            )));
        }
        found.push(Member { name, size, sha256 });
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(unreadable)?;
    Ok(found)
}

/// Every regular file of the archive with its size and SHA-256.
pub fn members_of(file: std::fs::File, progress: Progress<'_>) -> Result<Vec<Member>, CapError> {
    let mut done = 0u64;
    walk(file, |_, content| {
        let hashed = copy_hashed(content, &mut io::sink(), done, progress).map_err(unreadable)?;
        done += hashed.0;
        Ok(hashed)
    })
}

/// Copy member `wanted` of the archive to `target`, atomically. The whole
/// archive is read (to check its gzip checksum) before the file appears.
pub fn extract(
    dir: &Dir,
    file: std::fs::File,
    wanted: &str,
    target: &Path,
    progress: Progress<'_>,
) -> Result<Member, CapError> {
    let wanted = member_name(wanted)?;
    let mut out: Option<AtomicFile> = None;
    let mut done = 0u64;
    let members = walk(file, |name, content| {
        if name != wanted {
            let hashed =
                copy_hashed(content, &mut io::sink(), done, progress).map_err(unreadable)?;
            done += hashed.0;
            return Ok(hashed);
        }
        if out.is_some() {
            return Err(CapError::Failed(format!(
                "the archive holds {wanted} twice: refusing to guess which is meant"
            )));
        }
        let file = AtomicFile::create(dir, target)?;
        let mut sink = BufWriter::with_capacity(1 << 20, file.std_handle()?);
        let hashed = copy_hashed(content, &mut sink, done, progress).map_err(unreadable)?;
        sink.into_inner().map_err(|e| e.into_error())?;
        done += hashed.0;
        out = Some(file);
        Ok(hashed)
    })?;
    let member = members
        .into_iter()
        .find(|m| m.name == wanted)
        .ok_or_else(|| CapError::NotFound(format!("the archive has no member {wanted}")))?;
    if let Some(mut file) = out {
        file.commit()?;
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    fn scratch() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).expect("open");
        (tmp, dir)
    }

    fn no_progress() -> impl Fn(u64) + Send + Sync {
        |_| {}
    }

    #[test]
    fn packs_reads_back_and_extracts() {
        let (tmp, dir) = scratch();
        std::fs::write(tmp.path().join("big.bin"), vec![7u8; 3_000_001]).expect("write");
        let written = pack(
            &dir,
            Path::new("a.tar.gz"),
            vec![
                ("ts/db.dump".into(), Source::File("big.bin".into())),
                ("ts/manifest.json".into(), Source::Bytes(b"{}".to_vec())),
            ],
            false,
            &no_progress(),
        )
        .expect("pack");
        assert_eq!(written[0].size, 3_000_001);
        let listed = members_of(
            std::fs::File::open(tmp.path().join("a.tar.gz")).expect("open"),
            &no_progress(),
        )
        .expect("list");
        assert_eq!(listed, written);
        // `tar` itself reads it, with the directory entry.
        let out = std::process::Command::new("tar")
            .args(["tzf", "a.tar.gz"])
            .current_dir(tmp.path())
            .output()
            .expect("tar");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ts/\nts/db.dump\nts/manifest.json\n"
        );
        let got = extract(
            &dir,
            std::fs::File::open(tmp.path().join("a.tar.gz")).expect("open"),
            "./ts/db.dump",
            Path::new("out.dump"),
            &no_progress(),
        )
        .expect("extract");
        assert_eq!(got, written[0]);
        assert_eq!(
            std::fs::read(tmp.path().join("out.dump")).expect("read"),
            vec![7u8; 3_000_001]
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_refused_and_extract_leaves_nothing() {
        let (tmp, dir) = scratch();
        std::fs::write(tmp.path().join("f"), vec![1u8; 100_000]).expect("write");
        pack(
            &dir,
            Path::new("a.tar.gz"),
            vec![("x/f".into(), Source::File("f".into()))],
            true,
            &no_progress(),
        )
        .expect("pack");
        let whole = std::fs::read(tmp.path().join("a.tar.gz")).expect("read");
        std::fs::write(tmp.path().join("cut.tar.gz"), &whole[..whole.len() - 9]).expect("cut");
        let open = |n: &str| std::fs::File::open(tmp.path().join(n)).expect("open");
        let err = members_of(open("cut.tar.gz"), &no_progress()).expect_err("truncated");
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
        let err = extract(
            &dir,
            open("cut.tar.gz"),
            "x/f",
            Path::new("out"),
            &no_progress(),
        )
        .expect_err("truncated");
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
        assert!(!tmp.path().join("out").exists());
        let leftovers = std::fs::read_dir(tmp.path()).expect("ls").count();
        assert_eq!(leftovers, 3, "no temp file is left behind");

        std::fs::write(
            tmp.path().join("text.tar.gz"),
            "hello, not an archive\n".repeat(40),
        )
        .expect("write");
        assert!(members_of(open("text.tar.gz"), &no_progress()).is_err());
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let (tmp, _dir) = scratch();
        let path = tmp.path().join("bomb.tar.gz");
        let mut gz = GzEncoder::new(
            std::fs::File::create(&path).expect("create"),
            Compression::best(),
        );
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1100 {
            gz.write_all(&zeros).expect("write");
        }
        gz.finish().expect("finish");
        let err = members_of(std::fs::File::open(&path).expect("open"), &no_progress())
            .expect_err("bomb");
        assert!(err.to_string().contains("gzip bomb"), "{err}");
    }

    #[test]
    fn member_names_stay_relative_and_unique() {
        assert!(member_name("../etc/passwd").is_err());
        assert!(member_name("/etc/passwd").is_err());
        assert!(member_name("a/./b").is_err());
        assert_eq!(member_name("./a/b").expect("ok"), "a/b");
        let (_tmp, dir) = scratch();
        let twice = vec![
            ("a".to_string(), Source::Bytes(vec![])),
            ("./a".to_string(), Source::Bytes(vec![])),
        ];
        assert!(pack(&dir, Path::new("t.tar.gz"), twice, true, &no_progress()).is_err());
    }
}
