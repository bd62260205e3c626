//! `releasedesk demo`: demo data for a newcomer, and the credentials to try it with.
//!
//! On an empty database it seeds two environments, numbers (one held by an active agent, one
//! by a paused agent), two pending requests, a staff account and an API token. On a database
//! that already holds the demo, it seeds nothing but issues a fresh token and a fresh staff
//! login, so every run prints credentials that work (the old ones stay valid).

use anyhow::Context;
use rand::Rng;
use releasedesk_domain::{AgentStatus, Direction, E164, EmailAddress, Reason, StaffRole};
use releasedesk_store::{Actor, EnvironmentInfo, PhoneNumberView, Store};

const DEMO_ENV: &str = "Acme Voice (demo)";

pub struct Seeded {
    pub environment: EnvironmentInfo,
    pub token: String,
    pub staff_email: String,
    pub staff_password: String,
    pub free_number: Option<PhoneNumberView>,
    pub in_use_number: Option<PhoneNumberView>,
    pub agent_id: Option<String>,
    pub fresh: bool,
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
    if let Some(env) = existing.iter().find(|e| e.name == DEMO_ENV) {
        return reissue(store, env.clone()).await;
    }
    if !existing.is_empty() {
        anyhow::bail!(
            "the database already holds data that is not the demo's; run the demo on an empty database (e.g. DATABASE_URL=sqlite://demo.db?mode=rwc)"
        );
    }

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
    let free = store
        .add_phone_number(acme.id, &e164("+15550002222"))
        .await?;
    let front_desk = store
        .add_agent(
            acme.id,
            "Front desk",
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
    let token = store.issue_token(acme.id, Some("demo")).await?;
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

    let globex = store
        .create_environment(
            "Globex Telephony (demo)",
            &EmailAddress::parse("noc@globex.example")?,
        )
        .await?;
    let uk = store
        .add_phone_number(globex.id, &e164("+442071234567"))
        .await?;
    let globex_token = store.issue_token(globex.id, Some("demo")).await?;
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

    let (staff_email, staff_password) = add_staff(store, "demo@releasedesk.local").await?;
    Ok(Seeded {
        environment: acme,
        token: token.token.expose().to_owned(),
        staff_email,
        staff_password,
        free_number: Some(free),
        in_use_number: Some(in_use),
        agent_id: Some(front_desk.id.to_string()),
        fresh: true,
    })
}

async fn add_staff(store: &Store, email: &str) -> anyhow::Result<(String, String)> {
    let password = random_password();
    let email = EmailAddress::parse(email)?;
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
    Ok((email.as_str().to_owned(), password))
}

async fn reissue(store: &Store, env: EnvironmentInfo) -> anyhow::Result<Seeded> {
    let token = store.issue_token(env.id, Some("demo")).await?;
    let suffix: u32 = rand::rng().random_range(1000..10000);
    let (staff_email, staff_password) =
        add_staff(store, &format!("demo-{suffix}@releasedesk.local")).await?;
    let numbers = store.list_phone_numbers(env.id, 100, None).await?.items;
    let free_number = numbers
        .iter()
        .find(|n| n.phone_number == "+15550002222" && n.current_status.as_str() == "active")
        .cloned();
    let in_use_number = numbers
        .iter()
        .find(|n| n.phone_number == "+15557654321")
        .cloned();
    let agent_id = in_use_number
        .as_ref()
        .and_then(|n| n.agents.first())
        .map(|a| a.id.to_string());
    Ok(Seeded {
        environment: env,
        token: token.token.expose().to_owned(),
        staff_email,
        staff_password,
        free_number,
        in_use_number,
        agent_id,
        fresh: false,
    })
}

impl Seeded {
    pub fn print(&self, base_url: &str) {
        let mut out = String::new();
        out.push_str(&format!("\nreleasedesk demo is running at {base_url}\n"));
        if !self.fresh {
            out.push_str(
                "(demo data already present: a fresh token and staff login were issued)\n",
            );
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
        if let Some(n) = &self.free_number {
            out.push_str(&format!(
                "  export FREE_NUMBER={}   # {} (no agent holds it)\n",
                n.id, n.phone_number
            ));
        }
        if let Some(n) = &self.in_use_number {
            out.push_str(&format!(
                "  export IN_USE_NUMBER={}   # {} (held by the active agent \"Front desk\")\n",
                n.id, n.phone_number
            ));
        }
        if let Some(a) = &self.agent_id {
            out.push_str(&format!("  export AGENT={a}   # \"Front desk\"\n"));
        }
        out.push_str("\nStop with Ctrl-C.\n");
        println!("{out}");
    }
}
