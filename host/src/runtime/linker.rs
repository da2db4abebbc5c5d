//! The linker: WASI with nothing in it, the always-present interfaces
//! (types, progress, crypto), and only the capability interfaces the
//! plugin's manifest declares. An interface it does not declare is not
//! linked at all; every call on a linked one passes the gate.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

use super::StoreData;
use crate::caps::bindings::opshost::plugin as wit;
use crate::caps::HostState;
use crate::policy::{Capability, Grant};

pub fn build(engine: &Engine, grants: &[Grant]) -> anyhow::Result<Linker<StoreData>> {
    let mut linker = Linker::<StoreData>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wit::types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    wit::progress::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    wit::crypto::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    let granted = |cap: Capability| grants.iter().any(|g| g.capability() == cap);
    if granted(Capability::Fs) {
        wit::fs::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    }
    if granted(Capability::Http) {
        wit::http::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    }
    if granted(Capability::Db) {
        // db's dump/restore take an fs `dir` handle: the fs interface must be
        // linked for the type to exist; without an fs grant `open` denies.
        if !granted(Capability::Fs) {
            wit::fs::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
        }
        wit::db::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    }
    if granted(Capability::Container) {
        wit::container::add_to_linker::<_, HasSelf<HostState>>(&mut linker, caps)?;
    }
    Ok(linker)
}

/// The capabilities' part of the store: every capability interface is
/// linked to it, never to the store as a whole.
fn caps(data: &mut StoreData) -> &mut HostState {
    &mut data.caps
}
