//! The command line (DESIGN §5). Admin commands print one human line, or one JSON object with
//! `--json`; logs go to stderr.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use releasedesk_domain::{
    AgentStatus, Direction, E164, EmailAddress, EnvironmentId, PhoneNumberId,
};
use releasedesk_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{DbArgs, MailArgs, ServeArgs, ServeConfig};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "releasedesk",
    version,
    about = "Review and approval of phone-number release requests"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    /// Print admin command results as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate, then serve the API, the console and the outbox worker.
    Serve(ServeArgs),
    /// Seed demo data on an empty database, print a token and a staff sign-in, then serve.
    Demo(ServeArgs),
    /// Apply migrations and exit.
    Migrate(DbArgs),
    /// Run only the outbox worker (emails and release jobs).
    Worker {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        mail: MailArgs,
    },
    /// Environments (tenants).
    #[command(subcommand)]
    Env(EnvCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Phone numbers.
    #[command(subcommand)]
    Phone(PhoneCommand),
    /// Agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Support staff accounts.
    #[command(subcommand)]
    Staff(StaffCommand),
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        name: String,
        /// Where approval, rejection and release emails go.
        #[arg(long)]
        notify_email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for an environment; it is shown once.
    Issue {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        env: String,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke the token(s) with this display prefix (`talq_` + 8 characters).
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Add a phone number to an environment.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        env: String,
        /// E.164, e.g. +15551234567.
        #[arg(long)]
        number: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Add an agent, optionally holding numbers.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        env: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "active", value_parser = ["active", "draft", "paused"])]
        status: String,
        #[arg(long, default_value = "inbound", value_parser = ["inbound", "outbound"])]
        direction: String,
        /// A phone number id the agent holds (repeatable).
        #[arg(long = "phone")]
        phones: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Add a staff account; the password (12+ characters) is read from stdin.
    Add {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an admin command's result: a human line, or the JSON object with `--json`.
fn report(json: bool, human: String, value: serde_json::Value) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// The store of an admin command: only the database matters, the rest is defaults.
async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    open_with(&ServeConfig {
        database_url: db.database_url.clone(),
        ..ServeConfig::for_tests("", ".".into())
    })
    .await
}

/// Connects with `config`'s options (pool size, support inbox) and applies the migrations.
async fn open_with(config: &ServeConfig) -> anyhow::Result<Store> {
    let store = crate::app::connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

fn env_id(s: &str) -> anyhow::Result<EnvironmentId> {
    EnvironmentId::parse(s).map_err(|_| anyhow!("--env must be an environment id (a UUID)"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => serve(ServeConfig::from_args(args), None).await,
        Command::Demo(args) => {
            let config = ServeConfig::from_args(args);
            let store = open_with(&config).await?;
            let seeded = crate::demo::seed(&store).await?;
            store.close().await;
            serve(config, Some(seeded)).await
        }
        Command::Migrate(db) => {
            let store = open(&db).await?;
            store.close().await;
            report(
                json,
                "migrations applied".into(),
                json!({ "migrated": true }),
            );
            Ok(())
        }
        Command::Worker { db, mail } => {
            let config = ServeConfig::from_args(ServeArgs {
                db,
                bind: ([127, 0, 0, 1], 0).into(),
                mail,
                no_worker: false,
                shutdown_grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
            });
            let store = open_with(&config).await?;
            let public_url = config
                .public_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".into());
            let worker = crate::app::build_worker(&store, &config, &public_url)?;
            let token = CancellationToken::new();
            tokio::spawn(cancel_on_signal(token.clone()));
            tracing::info!("outbox worker running");
            worker.run(token).await;
            store.close().await;
            Ok(())
        }
        Command::Env(EnvCommand::Create {
            db,
            name,
            notify_email,
        }) => {
            let email = EmailAddress::parse(&notify_email)
                .map_err(|_| anyhow!("--notify-email is not a valid email address"))?;
            let store = open(&db).await?;
            let env = store.create_environment(&name, &email).await?;
            report(
                json,
                format!("environment {} created: {}", env.name, env.id),
                json!({ "id": env.id.to_string() }),
            );
            Ok(())
        }
        Command::Token(TokenCommand::Issue { db, env, label }) => {
            let store = open(&db).await?;
            let issued = store.issue_token(env_id(&env)?, label.as_deref()).await?;
            report(
                json,
                format!(
                    "token (shown once, store it now): {}",
                    issued.token.expose()
                ),
                json!({ "token": issued.token.expose(), "prefix": issued.info.prefix, "id": issued.id.to_string() }),
            );
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { db, prefix }) => {
            let store = open(&db).await?;
            let n = store.revoke_token(&prefix).await?;
            if n == 0 {
                return Err(anyhow!("no live token has the prefix {prefix}"));
            }
            report(
                json,
                format!("revoked {n} token(s) with prefix {prefix}"),
                json!({ "revoked": n }),
            );
            Ok(())
        }
        Command::Phone(PhoneCommand::Add { db, env, number }) => {
            let number = E164::parse(&number).map_err(|e| anyhow!("--number is not E.164: {e}"))?;
            let store = open(&db).await?;
            let added = store.add_phone_number(env_id(&env)?, &number).await?;
            report(
                json,
                format!("phone number {} added: {}", added.phone_number, added.id),
                json!({ "id": added.id.to_string() }),
            );
            Ok(())
        }
        Command::Agent(AgentCommand::Add {
            db,
            env,
            name,
            status,
            direction,
            phones,
        }) => {
            let status: AgentStatus = status
                .parse()
                .map_err(|_| anyhow!("--status must be active, draft or paused"))?;
            let direction: Direction = direction
                .parse()
                .map_err(|_| anyhow!("--direction must be inbound or outbound"))?;
            let phones = phones
                .iter()
                .map(|p| {
                    PhoneNumberId::parse(p)
                        .map_err(|_| anyhow!("--phone {p} is not a phone number id"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let store = open(&db).await?;
            let agent = store
                .add_agent(env_id(&env)?, &name, status, direction, &phones)
                .await?;
            report(
                json,
                format!("agent {} added: {}", agent.name, agent.id),
                json!({ "id": agent.id.to_string() }),
            );
            Ok(())
        }
        Command::Staff(StaffCommand::Add { db, email, name }) => {
            let email = EmailAddress::parse(&email)
                .map_err(|_| anyhow!("--email is not a valid email address"))?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = open(&db).await?;
            let id = releasedesk_console::create_staff(&store, &email, &name, password).await?;
            report(
                json,
                format!("staff {email} added: {id}"),
                json!({ "id": id.to_string() }),
            );
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig, demo: Option<crate::demo::Seeded>) -> anyhow::Result<()> {
    let server = crate::app::start(config).await?;
    if let Some(seeded) = demo {
        seeded.print(&server.base_url());
    } else {
        eprintln!("releasedesk listening on {}", server.base_url());
    }
    tokio::spawn(cancel_on_signal(server.shutdown_token()));
    server.wait().await;
    tracing::info!("releasedesk stopped");
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
    token.cancel();
}
