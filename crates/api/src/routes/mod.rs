pub mod agents;
pub mod phone_numbers;
pub mod release_requests;
pub mod webhooks;

use releasedesk_store::Cursor;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiError;

/// Page size when `?limit=` is not given.
pub(crate) const DEFAULT_LIMIT: u64 = 50;
/// Largest `?limit=`.
pub(crate) const MAX_LIMIT: u64 = 100;

/// `?limit=` and `?cursor=`, shared by every list.
///
/// Read as text and parsed by [`page_params`], so that `limit=ten` is a 422 naming `limit`
/// rather than a generic query error.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100, default = 50, nullable = false)]
    pub(crate) limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false)]
    pub(crate) cursor: Option<String>,
}

/// `?limit=` (1–100, default 50) and `?cursor=`.
pub(crate) fn page_params(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(u64, Option<Cursor>), ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<u64>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
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
