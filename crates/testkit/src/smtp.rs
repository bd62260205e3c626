//! A real SMTP server for tests (mailin-embedded, in the test process) whose answers a test
//! scripts, and just enough MIME parsing to read what it received. Used by the notify crate's
//! tests and the root black-box tests.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig};

// ---- the SMTP server -----------------------------------------------------------------------

/// How the server answers one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Accept,
    /// 421 at the end of DATA: service not available, closing the connection (transient).
    Unavailable,
    /// 550 at RCPT: mailbox unavailable (permanent).
    NoMailbox,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub raw: String,
}

impl Received {
    pub fn parsed(&self) -> ParsedEmail {
        ParsedEmail::parse(&self.raw)
    }
}

#[derive(Default)]
struct SmtpState {
    /// Answers for the next messages, in order; `Accept` once it is empty.
    script: VecDeque<Reply>,
    received: Vec<Received>,
    refused: usize,
}

#[derive(Clone)]
struct ScriptedHandler {
    state: Arc<Mutex<SmtpState>>,
    /// The answer for the message in progress, taken from the script at `MAIL FROM`.
    reply: Reply,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for ScriptedHandler {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, _from: &str) -> Response {
        self.reply = self
            .state
            .lock()
            .unwrap()
            .script
            .pop_front()
            .unwrap_or(Reply::Accept);
        mailin_embedded::response::OK
    }

    // A 550 is given at RCPT, where real servers refuse unknown mailboxes. (mailin, after an
    // error at the end of DATA, keeps reading DATA and never answers the client's QUIT.)
    fn rcpt(&mut self, _to: &str) -> Response {
        if self.reply == Reply::NoMailbox {
            self.state.lock().unwrap().refused += 1;
            return Response::custom(550, "5.1.1 Mailbox unavailable".into());
        }
        mailin_embedded::response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut state = self.state.lock().unwrap();
        if self.reply == Reply::Unavailable {
            state.refused += 1;
            // 421 makes mailin close the connection, as a server going away would.
            return Response::custom(421, "4.3.2 Service not available, try again later".into());
        }
        let raw = String::from_utf8(std::mem::take(&mut self.data)).expect("UTF-8 message");
        state.received.push(Received {
            from: self.from.clone(),
            to: self.to.clone(),
            raw,
        });
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on 127.0.0.1 (mailin-embedded, its own threads). It runs until the test
/// process ends: mailin has no stop, so "down" is a port nobody listens on yet.
pub struct SmtpServer {
    addr: SocketAddr,
    state: Arc<Mutex<SmtpState>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// A port with nothing listening on it: connections are refused until [`Self::start_on`].
    pub fn unused_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn start_on(port: u16) -> Self {
        Self::start_with(TcpListener::bind(("127.0.0.1", port)).unwrap())
    }

    fn start_with(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SmtpState::default()));
        let handler = ScriptedHandler {
            state: state.clone(),
            reply: Reply::Accept,
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server
                .with_name("smtp.test")
                .with_num_threads(8)
                .with_tcp_listener(listener);
            server.with_ssl(SslConfig::None).unwrap();
            server.serve().unwrap();
        });
        // The listener is bound already; this only proves the accept loop runs.
        for _ in 0..50 {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        smtp_url(self.addr.port())
    }

    /// The next messages get these answers, in order.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn received_count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    pub fn refused_count(&self) -> usize {
        self.state.lock().unwrap().refused
    }
}

pub fn smtp_url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}")
}

// ---- reading the messages ------------------------------------------------------------------

/// Just enough MIME to check what releasedesk sends: unfolded top-level headers and the
/// decoded parts of a multipart/alternative body.
#[derive(Debug, Clone)]
pub struct ParsedEmail {
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub struct Part {
    pub content_type: String,
    pub body: String,
}

impl ParsedEmail {
    pub fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").expect("headers and body");
        let headers = parse_headers(head);
        let content_type = header_in(&headers, "Content-Type").expect("Content-Type");
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .expect("a multipart message")
            .trim_matches('"')
            .to_owned();
        let parts = body
            .split(&format!("--{boundary}"))
            .skip(1)
            .take_while(|p| !p.starts_with("--"))
            .map(|p| {
                let (head, body) = p.trim_start_matches('\n').split_once("\n\n").expect("part");
                let headers = parse_headers(head);
                let encoding = header_in(&headers, "Content-Transfer-Encoding").unwrap_or_default();
                let body = body.strip_suffix('\n').unwrap_or(body);
                let body = match encoding.to_ascii_lowercase().as_str() {
                    "" | "7bit" | "8bit" => body.to_owned(),
                    "quoted-printable" => decode_quoted_printable(body),
                    other => panic!("unexpected transfer encoding {other}"),
                };
                Part {
                    content_type: header_in(&headers, "Content-Type").unwrap_or_default(),
                    body,
                }
            })
            .collect();
        Self { headers, parts }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.headers, name)
    }

    pub fn part(&self, mime: &str) -> &Part {
        self.parts
            .iter()
            .find(|p| p.content_type.starts_with(mime))
            .unwrap_or_else(|| panic!("no {mime} part in {:?}", self.parts))
    }

    pub fn text(&self) -> &str {
        &self.part("text/plain").body
    }

    pub fn html(&self) -> &str {
        &self.part("text/html").body
    }
}

fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn header_in(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("quoted-printable escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 body")
}
