//! Keyset paging: a page costs the same at a thousand rows or a million.

/// Where the next page starts: the id of the last item of this page. Ids are UUIDv7, so id
/// order is creation order and a page is an index range scan whatever the table's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub(crate) uuid::Uuid);

impl Cursor {
    pub fn encode(&self) -> String {
        self.0.simple().to_string()
    }
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| uuid::Uuid::parse_str(s).ok().map(Self))
            .flatten()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    pub fn has_more(&self) -> bool {
        self.next_cursor.is_some()
    }

    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub(crate) fn from_probe(
        mut rows: Vec<T>,
        limit: u64,
        id_of: impl Fn(&T) -> uuid::Uuid,
    ) -> Self {
        let has_more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|r| Cursor(id_of(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
