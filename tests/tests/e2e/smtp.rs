//! A real SMTP receiver for tests: speaks enough SMTP (RFC 5321: greeting, EHLO/HELO, MAIL,
//! RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) over loopback for lettre to deliver to it,
//! and keeps what it received. No STARTTLS or AUTH is offered, so the client sends in plain
//! text, as it would to a local relay.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One mail as the receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message (headers and body), with quoted-printable soft breaks and escapes undone.
    pub message: String,
}

impl ReceivedMail {
    /// The first link in the message starting with `prefix` (up to a space, quote or line end).
    pub fn link_starting(&self, prefix: &str) -> Option<String> {
        let start = self.message.find(prefix)?;
        let rest = &self.message[start..];
        let end = rest
            .find(|character: char| {
                character.is_whitespace() || character == '"' || character == '<'
            })
            .unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }

    pub fn subject(&self) -> String {
        self.message
            .lines()
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }
}

/// A running receiver; stops when dropped.
pub struct SmtpReceiver {
    pub address: SocketAddr,
    received: Arc<(Mutex<Vec<ReceivedMail>>, Notify)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpReceiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("a literal address")).await
    }

    /// Listens on `address` (a port a test chose before the receiver was up).
    pub async fn start_on(address: SocketAddr) -> Self {
        Self::listen(address, Duration::ZERO).await
    }

    /// Listens on a free port and takes `delay` to accept each mail, as a busy server might.
    pub async fn start_slow(delay: Duration) -> Self {
        Self::listen("127.0.0.1:0".parse().expect("a literal address"), delay).await
    }

    async fn listen(address: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind(address)
            .await
            .expect("the SMTP port binds");
        let address = listener.local_addr().expect("a local address");
        let received = Arc::new((Mutex::new(Vec::new()), Notify::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = converse(stream, &store, delay).await;
                });
            }
        });
        Self {
            address,
            received,
            task,
        }
    }

    /// The URL Silo's `SILO_SMTP_URL` takes for this receiver.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Every mail received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.received.0.lock().expect("not poisoned").clone()
    }

    /// Every mail received so far for `to`.
    pub fn mails_to(&self, to: &str) -> Vec<ReceivedMail> {
        self.mails()
            .into_iter()
            .filter(|mail| mail.to.iter().any(|address| address == to))
            .collect()
    }

    /// Waits (at most `within`) for the `nth` (from 1) mail to `to`.
    pub async fn wait_for(&self, to: &str, nth: usize, within: Duration) -> ReceivedMail {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.received.1.notified();
            if let Some(mail) = self.mails_to(to).into_iter().nth(nth - 1) {
                return mail;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no mail number {nth} to {to} within {within:?}; received: {:?}",
                self.mails()
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

async fn converse(
    stream: TcpStream,
    store: &(Mutex<Vec<ReceivedMail>>, Notify),
    delay: Duration,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    writer.write_all(b"220 silo-test ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-silo-test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("RSET") {
            (from, to) = (String::new(), Vec::new());
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address_in(&line);
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address_in(&line));
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut message = String::new();
            while let Some(line) = lines.next_line().await? {
                if line == "." {
                    break;
                }
                // Dot-stuffing: a line the client began with "." came with one more.
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
                message.push('\n');
            }
            tokio::time::sleep(delay).await;
            let mail = ReceivedMail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                message: undo_quoted_printable(&message),
            };
            store.0.lock().expect("not poisoned").push(mail);
            store.1.notify_waiters();
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            writer.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        writer.write_all(reply).await?;
    }
    Ok(())
}

/// `MAIL FROM:<a@b> SIZE=…` → `a@b`.
fn address_in(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// Each quoted-printable part's soft line breaks (`=` at a line's end) joined and its `=XX`
/// escapes decoded, enough to read links and words; other parts pass through unchanged.
fn undo_quoted_printable(message: &str) -> String {
    let mut decoded = String::with_capacity(message.len());
    let (mut quoted, mut in_headers, mut pending) = (false, true, String::new());
    for line in message.lines() {
        if line.starts_with("--") {
            // A MIME boundary: a new part, with headers of its own.
            (quoted, in_headers) = (false, true);
        } else if in_headers {
            quoted |= line
                .to_ascii_lowercase()
                .starts_with("content-transfer-encoding: quoted-printable");
            in_headers = !line.is_empty();
        } else if quoted {
            match line.strip_suffix('=') {
                Some(soft) => pending.push_str(soft),
                None => {
                    pending.push_str(line);
                    decoded.push_str(&decode_escapes(&pending));
                    decoded.push('\n');
                    pending.clear();
                }
            }
            continue;
        }
        decoded.push_str(line);
        decoded.push('\n');
    }
    decoded
}

/// `=XX` → the byte XX.
fn decode_escapes(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'='
            && let Some(hex) = line.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
