use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// The current time at the precision both databases keep (microseconds), so a value read back
/// equals the value written.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
