//! The linker: WASI with nothing in it, the always-present interfaces
//! (types, progress, crypto), and only the capability interfaces the
//! plugin's manifest declares. An interface it does not declare is not
//! linked at all; every call on a linked one passes the gate.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

use super::HostState;
use crate::caps::bindings::opshost::plugin as wit;
use crate::policy::{Capability, Grant};

pub fn build(engine: &Engine, grants: &[Grant]) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit::progress::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit::crypto::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    let granted = |cap: Capability| grants.iter().any(|g| g.capability() == cap);
    if granted(Capability::Fs) {
        wit::fs::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    }
    if granted(Capability::Http) {
        wit::http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    }
    if granted(Capability::Db) {
        // db's dump/restore take an fs `dir` handle: the fs interface must be
        // linked for the type to exist; without an fs grant `open` denies.
        if !granted(Capability::Fs) {
            wit::fs::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        }
        wit::db::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    }
    if granted(Capability::Container) {
        wit::container::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    }
    Ok(linker)
}
