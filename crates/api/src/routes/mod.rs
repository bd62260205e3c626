pub mod agents;
pub mod phone_numbers;
pub mod release_requests;
pub mod webhooks;

use crate::ApiError;
use releasedesk_store::Cursor;

/// `?limit=` (1–100, default 50) and `?cursor=`, shared by every list.
pub(crate) fn page_params(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(u64, Option<Cursor>), ApiError> {
    let limit = match limit {
        None => 50,
        Some(s) => match s.parse::<u64>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(ApiError::validation(
                    "limit",
                    "must be an integer from 1 to 100",
                ));
            }
        },
    };
    let cursor = match cursor {
        None | Some("") => None,
        Some(s) => Some(Cursor::parse(s).ok_or_else(|| {
            ApiError::validation("cursor", "is not a cursor returned by this list")
        })?),
    };
    Ok((limit, cursor))
}
