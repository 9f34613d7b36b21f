//! `veil portal invite` and `veil staff add`: parse, read, print; crate
//! veil-portal does the work.
//!
//! Neither ever writes what it was given: the patient ID goes straight
//! into a `Phi` (logs say only that an invitation was issued), and the
//! staff password is read from stdin (with the terminal's echo off when
//! stdin is one), never from an argument a process list would show.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use veil_core::Phi;
use veil_portal::{Role, Secret};

use crate::emit;

/// `veil portal` subcommands.
#[derive(Subcommand)]
pub enum PortalCmd {
    /// Issue a one-time invitation for a patient: the last line of stdout
    /// is the sign-up link, `{public_url}/invite/{token}` ([portal]
    /// public_url). Only the token's hash is stored; a patient who already
    /// has an account sets a new password with it (a lost password).
    /// Logged in the ledger (operator and keyed patient reference).
    Invite {
        /// The patient's PatientID (never logged or stored: the store
        /// keeps the keyed patient reference).
        #[arg(long)]
        patient_id: String,
        /// Days until the link expires (1 to 90).
        #[arg(long, default_value_t = 14)]
        expires_days: u32,
        /// veil.toml (default: $VEIL_HOME/veil.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `veil staff` subcommands.
#[derive(Subcommand)]
pub enum StaffCmd {
    /// Add a staff console account. The password is the first line of
    /// stdin (12 characters at least); it is never echoed or printed.
    /// Logged in the ledger.
    Add {
        /// The account name (letters, digits, '.', '_', '-').
        name: String,
        /// admin, reviewer or auditor.
        #[arg(long, value_parser = ["admin", "reviewer", "auditor"])]
        role: String,
    },
    /// The staff console accounts: name, role, sign-in code, status.
    List,
    /// Disable an account: it can no longer sign in, and its sessions end
    /// at once. Logged in the ledger.
    Disable {
        /// The account name.
        name: String,
    },
    /// Enable a disabled account again. Logged in the ledger.
    Enable {
        /// The account name.
        name: String,
    },
}

fn now() -> i64 {
    use veil_gateway::Clock;
    veil_gateway::SystemClock.now()
}

/// Runs a `veil portal` command.
pub fn portal(db: Option<&str>, cmd: PortalCmd) -> Result<i32, String> {
    match cmd {
        PortalCmd::Invite {
            patient_id,
            expires_days,
            config,
        } => {
            let patient_id = Phi::new(patient_id);
            let home = crate::secure_home()?;
            let path = config.unwrap_or_else(|| home.join("veil.toml"));
            let file = load(&path)?;
            let public_url = file
                .portal
                .as_ref()
                .map(|p| p.public_url.clone())
                .ok_or_else(|| {
                    format!(
                        "{}: no [portal] public_url: invitation links are \
                         {{public_url}}/invite/TOKEN; add a [portal] section with listen and \
                         public_url",
                        path.display()
                    )
                })?;
            let mut site = veil_release::Site::open(file.store_url.as_deref().or(db), &home)
                .map_err(|e| e.to_string())?;
            let by = veil_release::operator(None);
            let token =
                veil_portal::Invitation::issue(&mut site, &patient_id, expires_days, &by, now())
                    .map_err(|e| e.to_string())?;
            tracing::info!(target: "veil", expires_days, "portal: invitation issued");
            crate::logging::notice(&format!(
                "invitation issued: give the link below to the patient; it works once and \
                 expires in {expires_days} days. It is shown only now (Veil keeps its hash)."
            ));
            emit(&format!("{public_url}/invite/{}\n", token.expose()))?;
        }
    }
    Ok(0)
}

fn load(path: &Path) -> Result<veil_gateway::PortalFile, String> {
    match veil_gateway::PortalFile::load(path) {
        Err(veil_gateway::ConfigError::Read(kind)) => Err(format!(
            "{}: cannot read it ({kind:?}); pass --config veil.toml with a [portal] section \
             (public_url)",
            path.display()
        )),
        other => other.map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// Runs a `veil staff` command.
pub fn staff(db: Option<&str>, cmd: StaffCmd) -> Result<i32, String> {
    match cmd {
        StaffCmd::Add { name, role } => {
            let role = Role::parse(&role).ok_or("--role is admin, reviewer or auditor")?;
            let password = read_password(&name)?;
            let mut site = crate::site(db)?;
            let by = veil_release::operator(None);
            let pos = veil_portal::add_staff(&mut site, &name, role, &password, &by, now())
                .map_err(|e| e.to_string())?;
            tracing::info!(target: "veil", ledger_position = pos, "staff: account added");
            emit(&format!(
                "staff account {name} added (role {}); ledger position {pos}\n",
                role.as_str()
            ))?;
        }
        StaffCmd::List => {
            let mut site = crate::site(db)?;
            let rows = site.store.portal_staff_all().map_err(|e| e.to_string())?;
            let mut t = String::new();
            for a in &rows {
                t.push_str(&format!(
                    "{}  {}  {}  {}\n",
                    a.subject,
                    a.role.as_deref().unwrap_or("-"),
                    if a.totp_nonce.is_some() {
                        "code"
                    } else {
                        "no-code"
                    },
                    if a.disabled { "disabled" } else { "active" }
                ));
            }
            t.push_str(&format!(
                "{} staff account{}\n",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            ));
            emit(&t)?;
        }
        StaffCmd::Disable { name } => set_disabled(db, &name, true)?,
        StaffCmd::Enable { name } => set_disabled(db, &name, false)?,
    }
    Ok(0)
}

fn set_disabled(db: Option<&str>, name: &str, disabled: bool) -> Result<(), String> {
    let mut site = crate::site(db)?;
    if site
        .store
        .portal_staff(name)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err(format!("no staff account {name}"));
    }
    let by = veil_release::operator(None);
    let pos = veil_portal::set_staff_disabled(&mut site, name, disabled, &by, now())
        .map_err(|e| e.to_string())?;
    let what = if disabled { "disabled" } else { "enabled" };
    tracing::info!(target: "veil", ledger_position = pos, "staff: account {what}");
    emit(&format!(
        "staff account {name} {what}; ledger position {pos}\n"
    ))
}

/// The first line of stdin, without its line end. On a terminal, asks on
/// stderr and turns echo off while it is typed.
fn read_password(name: &str) -> Result<Secret, String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let saved = if tty {
        crate::logging::notice(&format!(
            "password for {name} (12 characters at least; not shown):"
        ));
        echo_off(&stdin)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &t);
        eprintln!();
    }
    read.map_err(|e| format!("reading the password from stdin: {:?}", e.kind()))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(
            "no password: give it as the first line of stdin (e.g. from a password manager)".into(),
        );
    }
    if pw.chars().count() < veil_portal::MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short: {} characters at least",
            veil_portal::MIN_PASSWORD_LEN
        ));
    }
    Ok(Secret::new(pw))
}

/// Turns the terminal's echo off; returns the settings to restore.
fn echo_off(stdin: &std::io::Stdin) -> Option<rustix::termios::Termios> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let saved = tcgetattr(stdin).ok()?;
    let mut t = saved.clone();
    t.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Now, &t).ok()?;
    Some(saved)
}
