//! `vigie user …`: manage users directly on the data dir's registry.
//!
//! Works while vigie runs (SQLite WAL lets both open the file). A password is read
//! from standard input, never from the command line (which other users can see in the
//! process list), and never printed.

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use vigie_core::MemberId;
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::registry::{Registry, Role};

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user.
    Add {
        /// Login name.
        name: String,
        /// admin, technician, manager or viewer.
        #[arg(long)]
        role: Role,
        /// Member the user belongs to (managers and viewers).
        #[arg(long)]
        member: Option<MemberId>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a new API token for a user.
    Token {
        /// Login name.
        name: String,
    },
}

pub(crate) fn run(config: &Config, cmd: UserCommand) -> Result<()> {
    let db = Db::open_dir(&config.storage.data_dir)?;
    let registry = Registry::new(db);
    match cmd {
        UserCommand::Add {
            name,
            role,
            member,
            password_stdin,
        } => {
            if !password_stdin {
                bail!("give the password on standard input with --password-stdin");
            }
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the password from standard input")?;
            let password = input.lines().next().unwrap_or("").to_string();
            let user = registry.create_user_blocking(&name, role, member.as_ref(), &password)?;
            println!("created user {} ({})", user.name, user.role.as_str());
        }
        UserCommand::Token { name } => {
            let token = registry.create_token_blocking(&name)?;
            println!("{token}");
        }
    }
    Ok(())
}
