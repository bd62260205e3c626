//! The command line. Admin commands print one human line, or one JSON object with `--json`
//! (an error too: `{"error": "…"}`); logs go to stderr.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use releasedesk_domain::{
    AgentStatus, Direction, E164, EmailAddress, EnvironmentId, PhoneNumberId, RequiredApprovals,
    StaffRole,
};
use releasedesk_store::{Actor, Store, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{DbArgs, MailArgs, MetricsArgs, ServeArgs, ServeConfig, WebhookArgs};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "releasedesk",
    version,
    about = "Review and approval of phone-number release requests"
)]
pub struct Cli {
    /// Log format: pretty (for people) or json (one object per line). Logs go to stderr.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How an admin command prints its result.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print the result as one JSON object on stdout; an error as {"error": "…"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate, then serve the API, the console and the outbox worker.
    Serve(ServeArgs),
    /// Seed demo data on an empty database, print a token and a staff sign-in, then serve.
    Demo(ServeArgs),
    /// Apply migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        out: Output,
    },
    /// Run only the outbox worker (emails, webhook deliveries and release jobs).
    Worker {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        mail: MailArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
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
        /// The environment's name, as staff see it in the console.
        #[arg(long)]
        name: String,
        /// Where approval, rejection and release emails go.
        #[arg(long)]
        notify_email: String,
        /// How many different reviewers must approve a release: 1, or 2 for four eyes.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=2))]
        required_approvals: i64,
        #[command(flatten)]
        out: Output,
    },
    /// Change an environment's approval policy (applies to every approval from now on).
    Set {
        #[command(flatten)]
        db: DbArgs,
        /// The environment's id (from `env create`).
        #[arg(long)]
        env: String,
        /// How many different reviewers must approve a release: 1, or 2 for four eyes.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=2))]
        required_approvals: i64,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for an environment; it is shown once.
    Issue {
        #[command(flatten)]
        db: DbArgs,
        /// The environment's id (from `env create`).
        #[arg(long)]
        env: String,
        /// A note on what the token is for (e.g. ci, billing-sync); shown with its prefix.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke the token(s) with this display prefix (`talq_` + 8 characters).
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The token's display prefix: `talq_` and the next 8 characters.
        #[arg(long)]
        prefix: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Add a phone number to an environment.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The environment's id (from `env create`).
        #[arg(long)]
        env: String,
        /// E.164, e.g. +15551234567.
        #[arg(long)]
        number: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Add an agent, optionally holding numbers.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The environment's id (from `env create`).
        #[arg(long)]
        env: String,
        /// The agent's name.
        #[arg(long)]
        name: String,
        /// Only an active agent makes the numbers it holds "in use".
        #[arg(long, default_value = "active", value_parser = ["active", "draft", "paused"])]
        status: String,
        /// Which calls the agent handles on its numbers.
        #[arg(long, default_value = "inbound", value_parser = ["inbound", "outbound"])]
        direction: String,
        /// A phone number id the agent holds (repeatable).
        #[arg(long = "phone")]
        phones: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Add a staff account; the password (12+ characters) is read from stdin.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// The sign-in email (case-insensitive).
        #[arg(long)]
        email: String,
        /// The name shown in the console and the audit log.
        #[arg(long)]
        name: String,
        /// viewer (reads), reviewer (also approves, rejects, retries) or admin (also manages staff).
        #[arg(long, default_value = "reviewer", value_parser = ROLES)]
        role: String,
        #[command(flatten)]
        out: Output,
    },
    /// Change a staff account's role (effective at its next click).
    SetRole {
        #[command(flatten)]
        db: DbArgs,
        /// The account's sign-in email.
        #[arg(long)]
        email: String,
        /// viewer, reviewer or admin.
        #[arg(long, value_parser = ROLES)]
        role: String,
        #[command(flatten)]
        out: Output,
    },
    /// Disable a staff account; its sessions end at once.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        /// The account's sign-in email.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        out: Output,
    },
    /// Enable a disabled staff account again.
    Enable {
        #[command(flatten)]
        db: DbArgs,
        /// The account's sign-in email.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        out: Output,
    },
}

const ROLES: [&str; 3] = ["viewer", "reviewer", "admin"];

fn role(s: &str) -> anyhow::Result<StaffRole> {
    s.parse()
        .map_err(|_| anyhow!("--role must be viewer, reviewer or admin"))
}

fn required_approvals(n: i64) -> anyhow::Result<RequiredApprovals> {
    RequiredApprovals::new(n).map_err(|e| anyhow!("--required-approvals: {e}"))
}

fn staff_email(s: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(s).map_err(|_| anyhow!("--email is not a valid email address"))
}

/// The account with this email, or an error naming it.
async fn staff_member(
    store: &Store,
    email: &EmailAddress,
) -> anyhow::Result<releasedesk_store::StaffMember> {
    match store.staff_by_email(email).await {
        Ok(m) => Ok(m),
        Err(StoreError::StaffNotFound) => Err(anyhow!("no staff account has the email {email}")),
        Err(e) => Err(e.into()),
    }
}

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Before parsing succeeds only the raw arguments can tell whether errors should be JSON.
    let json_requested = args.iter().any(|a| a == "--json");
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => return e.report(json_requested),
    };
    let json = cli.command.json();
    telemetry::init(cli.log_format, cli.command.default_log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(json, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(json, &error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Why the command line was refused.
enum ParseFailure {
    /// `--help`, `--version`, or no subcommand: clap prints it as it always does.
    Clap(clap::Error),
    /// A setting's value was refused: the message names the setting (variable and flag) and
    /// what to write instead.
    Setting(String),
}

impl ParseFailure {
    fn report(self, json: bool) -> ExitCode {
        match self {
            ParseFailure::Clap(e) if !e.use_stderr() => e.exit(),
            ParseFailure::Clap(e) if json => {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                fail(true, first.trim_start_matches("error: "));
            }
            ParseFailure::Clap(e) => {
                let _ = e.print();
            }
            ParseFailure::Setting(message) if json => fail(true, &message),
            ParseFailure::Setting(message) => {
                eprintln!("error: {message}\n\nFor more information, try '--help'.");
            }
        }
        ExitCode::from(2)
    }
}

/// Parses the command line and the environment. An environment variable set to the empty
/// string counts as unset (its default applies), so `SMTP_URL=` means "no SMTP".
fn parse(args: Vec<OsString>) -> Result<Cli, ParseFailure> {
    let command = without_empty_env(Cli::command());
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    parsed.map_err(|e| match setting_error(&e) {
        Some(message) => ParseFailure::Setting(message),
        None => ParseFailure::Clap(e),
    })
}

fn without_empty_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let empty = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.is_empty());
            if empty { arg.env(None::<&str>) } else { arg }
        })
        .mut_subcommands(without_empty_env)
}

/// A refused value, worded with the setting's environment variable and flag:
/// `invalid RELEASEDESK_BIND (--bind): 'localhost:8080' names a host, …`.
fn setting_error(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split([' ', '=']).next()?.strip_prefix("--")?;
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.as_str(),
        _ => "",
    };
    let reason = match e.kind() {
        ErrorKind::ValueValidation => {
            let source = std::error::Error::source(e)
                .map(ToString::to_string)
                .unwrap_or_default();
            // clap's BoolishValueParser says only this much.
            if source == "value was not a boolean" {
                format!("'{value}' is not a yes/no value; write 1 or 0, true or false, yes or no")
            } else {
                source
            }
        }
        ErrorKind::InvalidValue => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.join(", "),
                _ => String::new(),
            };
            format!("'{value}' is not one of: {valid}")
        }
        _ => return None,
    };
    let setting = match env_of(&Cli::command(), long) {
        Some(env) => format!("{env} (--{long})"),
        None => format!("--{long}"),
    };
    Some(format!("invalid {setting}: {reason}"))
}

/// The environment variable behind the flag `--{long}`, searched through every subcommand.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|c| env_of(c, long)))
}

/// An error and its causes on one line, each cause once: layers that repeat their source's
/// text (`database error: … (code: 14) …: (code: 14) …`) are folded.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// An error, as the person (stderr) or the script (`--json`, stdout) reads it.
fn fail(json: bool, message: &str) {
    if json {
        println!("{}", json!({ "error": message }));
    } else {
        eprintln!("error: {message}");
    }
}

impl Command {
    /// Whether `--json` was given (admin commands only have it).
    fn json(&self) -> bool {
        match self {
            Command::Serve(_) | Command::Demo(_) | Command::Worker { .. } => false,
            Command::Migrate { out, .. }
            | Command::Env(EnvCommand::Create { out, .. } | EnvCommand::Set { out, .. })
            | Command::Token(TokenCommand::Issue { out, .. } | TokenCommand::Revoke { out, .. })
            | Command::Phone(PhoneCommand::Add { out, .. })
            | Command::Agent(AgentCommand::Add { out, .. })
            | Command::Staff(
                StaffCommand::Add { out, .. }
                | StaffCommand::SetRole { out, .. }
                | StaffCommand::Disable { out, .. }
                | StaffCommand::Enable { out, .. },
            ) => out.json,
        }
    }

    /// Services log what they do; an admin command prints its one line and logs only
    /// warnings (its migrations, for one, are not news). `RUST_LOG` overrides both.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Demo(_) | Command::Worker { .. } => {
                telemetry::SERVICE_FILTER
            }
            Command::Migrate { .. }
            | Command::Env(_)
            | Command::Token(_)
            | Command::Phone(_)
            | Command::Agent(_)
            | Command::Staff(_) => telemetry::ADMIN_FILTER,
        }
    }
}

/// Prints an admin command's result: a human line, or the JSON object with `--json`.
fn report(out: Output, human: String, value: serde_json::Value) {
    if out.json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// The store of an admin command, migrated: only the database matters, the rest is defaults.
async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let config = ServeConfig {
        database_url: db.database_url.clone(),
        ..ServeConfig::for_tests("", ".".into())
    };
    let store = crate::app::connect(&config).await?;
    crate::database::migrate(&store).await?;
    Ok(store)
}

fn env_id(s: &str) -> anyhow::Result<EnvironmentId> {
    EnvironmentId::parse(s).map_err(|_| anyhow!("--env must be an environment id (a UUID)"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(ServeConfig::from_args(args)).await,
        Command::Demo(args) => demo(ServeConfig::from_args(args)).await,
        Command::Migrate { db, out } => {
            let store = open(&db).await?;
            store.close().await;
            report(
                out,
                "migrations applied".into(),
                json!({ "migrated": true }),
            );
            Ok(())
        }
        Command::Worker {
            db,
            mail,
            metrics,
            webhooks,
        } => {
            let config = ServeConfig::from_args(ServeArgs {
                db,
                bind: ([127, 0, 0, 1], 0).into(),
                mail,
                metrics,
                webhooks,
                no_worker: false,
                edges: Default::default(),
                shutdown_grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
            });
            let store = crate::app::connect(&config).await?;
            crate::database::migrate(&store).await?;
            let public_url = config
                .public_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".into());
            let worker = crate::app::build_worker(&store, &config, &public_url)?;
            let token = CancellationToken::new();
            let metrics_task = match config.metrics_bind {
                Some(bind) => Some(
                    crate::metrics::serve(bind, store.clone(), token.clone())
                        .await?
                        .1,
                ),
                None => None,
            };
            tokio::spawn(cancel_on_signal(token.clone()));
            tracing::info!("outbox worker running");
            worker.run(token).await;
            if let Some(task) = metrics_task {
                let _ = task.await;
            }
            store.close().await;
            Ok(())
        }
        Command::Env(EnvCommand::Create {
            db,
            name,
            notify_email,
            required_approvals: n,
            out,
        }) => {
            let email = EmailAddress::parse(&notify_email)
                .map_err(|_| anyhow!("--notify-email is not a valid email address"))?;
            let required = required_approvals(n)?;
            let store = open(&db).await?;
            let env = store
                .create_environment_with(&name, &email, required)
                .await?;
            report(
                out,
                format!(
                    "environment {} created: {} (releases need {} approval{})",
                    env.name,
                    env.id,
                    required,
                    if required.get() == 1 { "" } else { "s" }
                ),
                json!({ "id": env.id.to_string(), "required_approvals": required.get() }),
            );
            Ok(())
        }
        Command::Env(EnvCommand::Set {
            db,
            env,
            required_approvals: n,
            out,
        }) => {
            let required = required_approvals(n)?;
            let id = env_id(&env)?;
            let store = open(&db).await?;
            let env = match store
                .set_required_approvals(&Actor::Cli, id, required)
                .await
            {
                Ok(env) => env,
                Err(StoreError::EnvironmentNotFound) => {
                    return Err(anyhow!("no environment has the id {id}"));
                }
                Err(e) => return Err(e.into()),
            };
            report(
                out,
                format!(
                    "environment {}: releases need {} approval{}",
                    env.name,
                    required,
                    if required.get() == 1 { "" } else { "s" }
                ),
                json!({ "id": env.id.to_string(), "required_approvals": required.get() }),
            );
            Ok(())
        }
        Command::Token(TokenCommand::Issue {
            db,
            env,
            label,
            out,
        }) => {
            let env = env_id(&env)?;
            let store = open(&db).await?;
            let issued = store.issue_token(env, label.as_deref()).await?;
            report(
                out,
                format!(
                    "token (shown once, store it now): {}",
                    issued.token.expose()
                ),
                json!({ "token": issued.token.expose(), "prefix": issued.info.prefix, "id": issued.id.to_string() }),
            );
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { db, prefix, out }) => {
            let store = open(&db).await?;
            let n = store.revoke_token(&prefix).await?;
            if n == 0 {
                return Err(anyhow!("no live token has the prefix {prefix}"));
            }
            report(
                out,
                format!("revoked {n} token(s) with prefix {prefix}"),
                json!({ "revoked": n }),
            );
            Ok(())
        }
        Command::Phone(PhoneCommand::Add {
            db,
            env,
            number,
            out,
        }) => {
            let number = E164::parse(&number).map_err(|e| anyhow!("--number is not E.164: {e}"))?;
            let env = env_id(&env)?;
            let store = open(&db).await?;
            let added = store.add_phone_number(env, &number).await?;
            report(
                out,
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
            out,
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
            let env = env_id(&env)?;
            let store = open(&db).await?;
            let agent = store
                .add_agent(env, &name, status, direction, &phones)
                .await?;
            report(
                out,
                format!("agent {} added: {}", agent.name, agent.id),
                json!({ "id": agent.id.to_string() }),
            );
            Ok(())
        }
        Command::Staff(StaffCommand::Add {
            db,
            email,
            name,
            role: r,
            out,
        }) => {
            let email = staff_email(&email)?;
            let role = role(&r)?;
            let mut password = String::new();
            if std::io::stdin().is_terminal() {
                eprintln!("Password for {email} (12+ characters), then Enter and Ctrl-D:");
            }
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = open(&db).await?;
            let id = releasedesk_console::create_staff_with_role(
                &store,
                &Actor::Cli,
                &email,
                &name,
                password,
                role,
            )
            .await?;
            report(
                out,
                format!("staff {email} added as {role}: {id}"),
                json!({ "id": id.to_string(), "role": role.as_str() }),
            );
            Ok(())
        }
        Command::Staff(StaffCommand::SetRole {
            db,
            email,
            role: r,
            out,
        }) => {
            let email = staff_email(&email)?;
            let role = role(&r)?;
            let store = open(&db).await?;
            let member = staff_member(&store, &email).await?;
            let member = store.set_staff_role(&Actor::Cli, member.id, role).await?;
            report(
                out,
                format!("staff {email} is now {}", member.role),
                json!({ "id": member.id.to_string(), "role": member.role.as_str() }),
            );
            Ok(())
        }
        Command::Staff(StaffCommand::Disable { db, email, out }) => {
            let email = staff_email(&email)?;
            let store = open(&db).await?;
            let member = staff_member(&store, &email).await?;
            let member = store.disable_staff(&Actor::Cli, member.id).await?;
            report(
                out,
                format!("staff {email} is disabled; its sessions have ended"),
                json!({ "id": member.id.to_string(), "disabled": true }),
            );
            Ok(())
        }
        Command::Staff(StaffCommand::Enable { db, email, out }) => {
            let email = staff_email(&email)?;
            let store = open(&db).await?;
            let member = staff_member(&store, &email).await?;
            let member = store.enable_staff(&Actor::Cli, member.id).await?;
            report(
                out,
                format!("staff {email} is enabled"),
                json!({ "id": member.id.to_string(), "disabled": false }),
            );
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let server = crate::app::start(config).await?;
    // Not `eprintln!`: a closed stderr must not stop a server that is already serving.
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "releasedesk listening on {}", server.base_url());
    if let Some(addr) = server.metrics_addr {
        let _ = writeln!(stderr, "metrics on http://{addr}/metrics");
    }
    drop(stderr);
    tokio::spawn(cancel_on_signal(server.shutdown_token()));
    server.wait().await;
    tracing::info!("releasedesk stopped");
    Ok(())
}

/// `serve`, with demo data seeded (or brought up to date) once the database is migrated, and
/// `/metrics` on 127.0.0.1:9464 unless `RELEASEDESK_METRICS_BIND` says otherwise.
async fn demo(mut config: ServeConfig) -> anyhow::Result<()> {
    config
        .metrics_bind
        .get_or_insert(crate::config::DEMO_METRICS_BIND);
    let server = crate::app::start(config).await?;
    let seeded = match crate::demo::seed(&server.store).await {
        Ok(seeded) => seeded,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    seeded.print(&server.base_url(), server.metrics_addr);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all_commands(command: &clap::Command) -> Vec<&clap::Command> {
        let mut out = vec![command];
        for sub in command.get_subcommands() {
            out.extend(all_commands(sub));
        }
        out
    }

    #[test]
    fn every_flag_is_described() {
        let command = Cli::command();
        for cmd in all_commands(&command) {
            for arg in cmd.get_arguments() {
                if arg.get_long().is_none() || matches!(arg.get_long(), Some("help" | "version")) {
                    continue;
                }
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "`{} --{}` has no description",
                    cmd.get_name(),
                    arg.get_long().unwrap_or_default()
                );
            }
        }
    }

    #[test]
    fn json_is_offered_by_the_admin_commands_only() {
        let command = Cli::command();
        for cmd in all_commands(&command) {
            if cmd.has_subcommands() {
                continue;
            }
            let has_json = cmd.get_arguments().any(|a| a.get_long() == Some("json"));
            let service = matches!(cmd.get_name(), "serve" | "demo" | "worker");
            assert_eq!(has_json, !service, "`{}`", cmd.get_name());
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let inner = anyhow!("(code: 14) unable to open database file");
        let e = inner
            .context("Connection Error: (code: 14) unable to open database file")
            .context("connecting to the database");
        assert_eq!(
            error_chain(&e),
            "connecting to the database: Connection Error: (code: 14) unable to open database file"
        );
    }
}
