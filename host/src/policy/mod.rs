//! Policy: the grant grammar, the policy file, and the decision that
//! compares a plugin's requests with what it is granted.

pub mod check;
pub mod file;
pub mod grant;

pub use check::{decide, Decision};
pub use file::Policy;
pub use grant::{Capability, ContainerVerb, DbLevel, FsAccess, Grant};
