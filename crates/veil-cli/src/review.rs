//! `veil review list|approve|reject`: the review folder as a queue. A thin
//! shell over `veil_pipeline::review` (the queue) and
//! `veil_release::Site::review_decide` (decisions, logged in the ledger).

use std::path::PathBuf;

use clap::Subcommand;

use crate::{emit, site};

#[derive(Subcommand)]
pub enum ReviewCmd {
    /// What waits in a review folder, and why (pseudonymous paths only).
    List {
        /// The review folder (`veil deid`'s --review, default OUT.review).
        review: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve objects: each moves into the OUT it was de-identified for,
    /// and a ledger entry names the reviewer.
    Approve(Decide),
    /// Reject objects: each is deleted, and a ledger entry names the
    /// reviewer.
    Reject(Decide),
}

#[derive(clap::Args)]
pub struct Decide {
    /// The review folder.
    review: PathBuf,
    /// The objects, as `veil review list` prints them.
    #[arg(required_unless_present = "all")]
    items: Vec<String>,
    /// Every object waiting in the folder.
    #[arg(long, conflicts_with = "items")]
    all: bool,
    /// Who decides, for the ledger (default: $USER).
    #[arg(long)]
    reviewer: Option<String>,
}

pub fn review(db: Option<&str>, cmd: ReviewCmd) -> Result<i32, String> {
    match cmd {
        ReviewCmd::List { review, json } => {
            let rows = veil_pipeline::review::waiting(&review).map_err(|e| {
                format!("cannot read the review folder '{}': {e}", review.display())
            })?;
            if json {
                emit(&(serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                let mut t = String::new();
                for r in &rows {
                    t.push_str(&format!(
                        "{}  {}\n",
                        r.item,
                        r.reason.as_deref().unwrap_or("(not in the review index)")
                    ));
                }
                let n = rows.len();
                t.push_str(&format!(
                    "{n} object{} waiting for review\n",
                    if n == 1 { "" } else { "s" }
                ));
                emit(&t)?;
            }
            Ok(0)
        }
        ReviewCmd::Approve(d) => decide(db, d, true),
        ReviewCmd::Reject(d) => decide(db, d, false),
    }
}

fn decide(db: Option<&str>, d: Decide, approve: bool) -> Result<i32, String> {
    let mut s = site(db)?;
    let reviewer = veil_release::operator(d.reviewer.as_deref());
    let r = s
        .review_decide(&d.review, &d.items, d.all, approve, &reviewer)
        .map_err(|e| e.to_string())?;
    let positions: Vec<String> = r.ledger_positions.iter().map(u64::to_string).collect();
    emit(&format!(
        "{} by {reviewer}: {} object{}{}; ledger entries {}\n",
        if approve { "approved" } else { "rejected" },
        r.approved + r.rejected,
        if r.approved + r.rejected == 1 {
            ""
        } else {
            "s"
        },
        if approve {
            format!(" moved into {}", r.out.display())
        } else {
            " deleted".to_string()
        },
        if positions.is_empty() {
            "none".to_string()
        } else {
            positions.join(", ")
        }
    ))?;
    Ok(0)
}
