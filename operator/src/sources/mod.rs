//! Where definitions come from: a folder of manifest files (standalone) or the cluster's
//! watches (cluster mode). Both turn what they see into the compiler's upserts and
//! removals; nothing past this point knows which one it was.

pub mod folder;
pub mod watch;
