//! `releasedesk demo`: demo data for a newcomer, and what to try it with.
//!
//! On an empty database it seeds two environments, numbers (one held by an active agent, one
//! by a paused agent), two pending requests, one staff account and an API token.
//!
//! On a database that already holds the demo it seeds nothing new except what the README's
//! walk-through needs and the last walk-through used up: it looks for a number that is free
//! (no agent, no open request, not released) and one held by an active agent with no open
//! request, and adds a number (and assigns it to the active agent) only when there is none.
//! It issues a fresh token (a token is shown only once) and gives the one demo staff account
//! a new password, so every run prints a sign-in and `export` lines that work as printed.

use std::io::Write;

use anyhow::Context;
use rand::Rng;
use releasedesk_domain::{
    AgentId, AgentStatus, Direction, E164, EmailAddress, PhoneNumberStatus, Reason, StaffRole,
};
use releasedesk_store::{Actor, AuthContext, EnvironmentInfo, PhoneNumberView, Store, StoreError};

const DEMO_ENV: &str = "Acme Voice (demo)";
const DEMO_STAFF: &str = "demo@releasedesk.local";
const FRONT_DESK: &str = "Front desk";
/// Demo numbers added on later runs are the first free ones from here up.
const FRESH_NUMBERS_FROM: u64 = 15_550_003_000;

pub struct Seeded {
    pub environment: EnvironmentInfo,
    pub token: String,
    pub staff_email: String,
    pub staff_password: String,
    pub walkthrough: Walkthrough,
    pub fresh: bool,
}

/// The data the README's walk-through starts from, as it is now.
pub struct Walkthrough {
    /// No agent holds it, it has no open request, it is not released.
    pub free_number: PhoneNumberView,
    /// Held by `agent` (active), no open request.
    pub in_use_number: PhoneNumberView,
    pub agent_id: AgentId,
    pub agent_name: String,
    /// Numbers or agents this run added because the earlier ones were used up.
    pub added: Vec<String>,
}

fn random_password() -> String {
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn e164(s: &str) -> E164 {
    E164::parse(s).expect("demo numbers are valid E.164")
}

pub async fn seed(store: &Store) -> anyhow::Result<Seeded> {
    let existing = store.list_environments().await?;
    let (environment, fresh) = match existing.iter().find(|e| e.name == DEMO_ENV) {
        Some(env) => (env.clone(), false),
        None if !existing.is_empty() => anyhow::bail!(
            "the database already holds data that is not the demo's; run the demo on an empty \
             database (e.g. DATABASE_URL=sqlite://demo.db?mode=rwc)"
        ),
        None => (seed_empty(store).await?, true),
    };
    let token = store
        .issue_token(environment.id, Some("demo"))
        .await
        .context("issuing the demo token")?;
    let auth = store
        .authenticate(&token.token.hash())
        .await?
        .context("the demo token authenticates")?;
    let walkthrough = walkthrough(store, &auth).await?;
    let staff_password = staff_login(store).await?;
    Ok(Seeded {
        environment,
        token: token.token.expose().to_owned(),
        staff_email: DEMO_STAFF.to_owned(),
        staff_password,
        walkthrough,
        fresh,
    })
}

/// The first run: two environments, numbers, agents and two pending requests.
async fn seed_empty(store: &Store) -> anyhow::Result<EnvironmentInfo> {
    let acme = store
        .create_environment(DEMO_ENV, &EmailAddress::parse("ops@acme-voice.example")?)
        .await?;
    let pending = store
        .add_phone_number(acme.id, &e164("+15551234567"))
        .await?;
    let in_use = store
        .add_phone_number(acme.id, &e164("+15557654321"))
        .await?;
    let paused_held = store
        .add_phone_number(acme.id, &e164("+15550001111"))
        .await?;
    store
        .add_phone_number(acme.id, &e164("+15550002222"))
        .await?;
    store
        .add_agent(
            acme.id,
            FRONT_DESK,
            AgentStatus::Active,
            Direction::Inbound,
            &[in_use.id],
        )
        .await?;
    store
        .add_agent(
            acme.id,
            "Night shift",
            AgentStatus::Paused,
            Direction::Outbound,
            &[paused_held.id],
        )
        .await?;
    let token = store.issue_token(acme.id, Some("demo seed")).await?;
    let auth = store
        .authenticate(&token.token.hash())
        .await?
        .context("the demo token authenticates")?;
    store
        .request_release(
            &auth,
            pending.id,
            Reason::parse("We moved our support line to a toll-free number; this DID has had no inbound calls since March.")?,
        )
        .await?;
    store.revoke_token(&token.info.prefix).await?;

    let globex = store
        .create_environment(
            "Globex Telephony (demo)",
            &EmailAddress::parse("noc@globex.example")?,
        )
        .await?;
    let uk = store
        .add_phone_number(globex.id, &e164("+442071234567"))
        .await?;
    let globex_token = store.issue_token(globex.id, Some("demo seed")).await?;
    let globex_auth = store
        .authenticate(&globex_token.token.hash())
        .await?
        .context("the demo token authenticates")?;
    store
        .request_release(
            &globex_auth,
            uk.id,
            Reason::parse(
                "London office closed at the end of the quarter.\nPlease release the main line.",
            )?,
        )
        .await?;
    store.revoke_token(&globex_token.info.prefix).await?;
    Ok(acme)
}

/// Finds, or makes, the free number, the in-use number and its active agent.
async fn walkthrough(store: &Store, auth: &AuthContext) -> anyhow::Result<Walkthrough> {
    let env = auth.environment_id;
    let mut added = Vec::new();
    let numbers = all_numbers(store, auth).await?;
    let open = |n: &&PhoneNumberView| {
        n.current_status != PhoneNumberStatus::Released && n.open_request_id.is_none()
    };

    let free_number = match numbers.iter().filter(open).find(|n| n.agents.is_empty()) {
        Some(n) => n.clone(),
        None => {
            let n = add_fresh_number(store, auth, &numbers).await?;
            added.push(format!("the free number {}", n.phone_number));
            n
        }
    };

    let held = numbers.iter().filter(open).find_map(|n| {
        n.agents
            .iter()
            .find(|a| a.blocks_release())
            .map(|a| (n.clone(), a.id, a.name.clone()))
    });
    let (in_use_number, agent_id, agent_name) = match held {
        Some(found) => found,
        None => {
            let numbers = all_numbers(store, auth).await?;
            let number = add_fresh_number(store, auth, &numbers).await?;
            let agents = store.list_agents(env, 100, None).await?.items;
            let (agent_id, agent_name) = match agents
                .iter()
                .filter(|a| a.current_status == AgentStatus::Active)
                .min_by_key(|a| a.name != FRONT_DESK)
            {
                Some(agent) => {
                    // The walk-through detaches every number of the agent; give it one back.
                    let mut holds = agent.phone_number_ids.clone();
                    holds.push(number.id);
                    store
                        .set_agent_calling(auth, agent.id, agent.direction, &holds)
                        .await
                        .context("assigning a fresh demo number to the active agent")?;
                    (agent.id, agent.name.clone())
                }
                None => {
                    let agent = store
                        .add_agent(
                            env,
                            FRONT_DESK,
                            AgentStatus::Active,
                            Direction::Inbound,
                            &[number.id],
                        )
                        .await?;
                    added.push(format!("the active agent \"{FRONT_DESK}\""));
                    (agent.id, agent.name)
                }
            };
            added.push(format!(
                "the number {} held by \"{agent_name}\"",
                number.phone_number
            ));
            (
                store.get_phone_number(env, number.id).await?,
                agent_id,
                agent_name,
            )
        }
    };
    Ok(Walkthrough {
        free_number,
        in_use_number,
        agent_id,
        agent_name,
        added,
    })
}

async fn all_numbers(store: &Store, auth: &AuthContext) -> anyhow::Result<Vec<PhoneNumberView>> {
    let mut numbers = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_phone_numbers(auth.environment_id, 100, cursor)
            .await?;
        numbers.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(numbers),
        }
    }
}

/// Adds the first demo number from [`FRESH_NUMBERS_FROM`] up that the environment lacks.
async fn add_fresh_number(
    store: &Store,
    auth: &AuthContext,
    numbers: &[PhoneNumberView],
) -> anyhow::Result<PhoneNumberView> {
    for candidate in FRESH_NUMBERS_FROM..FRESH_NUMBERS_FROM + 1000 {
        let text = format!("+{candidate}");
        if numbers.iter().any(|n| n.phone_number == text) {
            continue;
        }
        match store
            .add_phone_number(auth.environment_id, &e164(&text))
            .await
        {
            Ok(n) => return Ok(store.get_phone_number(auth.environment_id, n.id).await?),
            Err(StoreError::DuplicatePhoneNumber) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!(
        "no free demo number left between +{FRESH_NUMBERS_FROM} and +{}",
        FRESH_NUMBERS_FROM + 999
    )
}

/// The demo staff account with a new password: created on the first run, given a new password
/// on later ones (one account, however often the demo runs).
async fn staff_login(store: &Store) -> anyhow::Result<String> {
    let password = random_password();
    let email = EmailAddress::parse(DEMO_STAFF)?;
    if !releasedesk_console::set_staff_password(store, &email, &password).await? {
        // The demo's login is an admin, so every page of the console can be tried with it.
        releasedesk_console::create_staff_with_role(
            store,
            &Actor::Cli,
            &email,
            "Demo Admin",
            &password,
            StaffRole::Admin,
        )
        .await?;
    }
    Ok(password)
}

impl Seeded {
    pub fn print(&self, base_url: &str, metrics: Option<std::net::SocketAddr>) {
        let w = &self.walkthrough;
        let mut out = String::new();
        out.push_str(&format!("\nreleasedesk demo is running at {base_url}\n"));
        if !self.fresh {
            out.push_str(
                "(demo data already present: a fresh token was issued and the demo staff password was reset)\n",
            );
        }
        for added in &w.added {
            out.push_str(&format!("(added {added}: the earlier ones were used up)\n"));
        }
        out.push_str(&format!(
            "\nStaff console (an admin login): {base_url}/console/login\n  email:    {}\n  password: {}\n",
            self.staff_email, self.staff_password
        ));
        out.push_str(&format!(
            "\nAPI token for environment \"{}\" (shown once). Paste these into your shell:\n",
            self.environment.name
        ));
        out.push_str(&format!(
            "  export BASE={base_url}/api/v1\n  export TOKEN={}\n",
            self.token
        ));
        out.push_str(&format!(
            "  export FREE_NUMBER={}   # {} (no agent holds it, no open request)\n",
            w.free_number.id, w.free_number.phone_number
        ));
        out.push_str(&format!(
            "  export IN_USE_NUMBER={}   # {} (held by the active agent \"{}\")\n",
            w.in_use_number.id, w.in_use_number.phone_number, w.agent_name
        ));
        out.push_str(&format!(
            "  export AGENT={}   # \"{}\" (active, holds {})\n",
            w.agent_id, w.agent_name, w.in_use_number.phone_number
        ));
        if let Some(addr) = metrics {
            out.push_str(&format!("\nMetrics: http://{addr}/metrics\n"));
        }
        out.push_str("\nStop with Ctrl-C.\n\n");
        // Not `println!`: a closed stdout (`releasedesk demo | head`) must not stop the server.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }
}
