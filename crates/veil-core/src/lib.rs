//! Veil's shared vocabulary.
//!
//! Every other crate speaks in these types. Nothing here touches disk or
//! knows the PS3.15 tables: the point is that the de-identification engine,
//! the verifier and the reports can agree on *names* (tag paths, options,
//! reasons) without sharing *rules*.

mod echo;
pub mod limits;
mod option;
mod phi;
mod plural;
mod reason;
mod tag;

pub use echo::Echo;
pub use limits::Limit;
pub use option::{ProfileOption, UnknownOption};
pub use phi::Phi;
pub use plural::count;
pub use reason::QuarantineReason;
pub use tag::{Tag, TagPath, TagPattern};

/// Escapes text for XML and HTML content and attribute values, dropping
/// control characters XML cannot carry. One function for every report and
/// export Veil writes (verification and risk pages, audit messages), so a
/// value can never break out of its markup in one of them and not another.
pub fn escape_markup(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => o.push(c),
        }
    }
    o
}

/// Environment variables that carry secrets into Veil (the pseudonymization
/// key, the database password). A tool Veil runs (dciodvfy, ...) gets none
/// of them: it needs no key, and an inherited variable would show in its
/// environment, its crash reports and whatever it runs in turn.
pub const SECRET_ENV: &[&str] = &["VEIL_KEY", "VEIL_DB_PASSWORD", "PGPASSWORD"];

/// A command for an outside tool, without [`SECRET_ENV`] in its
/// environment. Every `Command` Veil starts for another program is built
/// here.
pub fn tool_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    for v in SECRET_ENV {
        c.env_remove(v);
    }
    c
}
