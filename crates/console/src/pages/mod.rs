//! One module per page (or per group of POSTs on one page).

pub(crate) mod assets;
pub(crate) mod audit;
pub(crate) mod decide;
pub(crate) mod login;
pub(crate) mod outbox;
pub(crate) mod queue;
pub(crate) mod request;
pub(crate) mod staff;

use axum::http::HeaderMap;

use crate::error::HtmlError;
use crate::flash::{self, Flash};

pub(crate) async fn not_found() -> HtmlError {
    HtmlError::NotFound("There is no such page in the console.")
}

/// The flash message this request carries (shown once; the flash middleware clears it).
pub(crate) fn flash_of(headers: &HeaderMap) -> Option<Flash> {
    flash::read(headers)
}
