//! What each mail says: a subject, plain text and the same as simple HTML, with the tenant's
//! name in all three. Pure functions of what the worker found, so they are tested without a
//! server.

use chrono::{DateTime, Utc};
use control_plane::mail::Mail;

/// A mail's words, before it is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One paragraph of a mail: words, or words followed by a link.
enum Paragraph {
    Words(String),
    Link { words: String, url: String },
}

fn day(at: &DateTime<Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

/// The words of `mail` for the workspace `tenant_name`; `link` is the mail's one link (the
/// workspace, the invitation or the reset page).
pub fn compose(mail: &Mail, tenant_name: &str, link: &str) -> Composed {
    use Paragraph::{Link, Words};
    let link = link.to_owned();
    let (subject, paragraphs) = match mail {
        Mail::Welcome => (
            format!("Your workspace {tenant_name} is ready"),
            vec![
                Words(format!(
                    "Welcome to Silo! Your workspace {tenant_name} is ready."
                )),
                Link {
                    words: "Open it and sign in with the email and password you chose:".to_owned(),
                    url: link,
                },
            ],
        ),
        Mail::Invitation { role, .. } => (
            format!("You are invited to join {tenant_name}"),
            vec![
                Words(format!(
                    "You have been invited to join the workspace {tenant_name} as {}.",
                    role.replace('_', "-")
                )),
                Link {
                    words: "Choose your name and password to accept (the link works for 7 days):"
                        .to_owned(),
                    url: link,
                },
            ],
        ),
        Mail::PasswordReset { .. } => (
            format!("Reset your password for {tenant_name}"),
            vec![
                Words(format!(
                    "Someone asked to reset your password for the workspace {tenant_name}."
                )),
                Link {
                    words: "Set a new one here (the link works once, for 30 minutes):".to_owned(),
                    url: link,
                },
                Words("If it was not you, ignore this mail: your password stays as it is.".into()),
            ],
        ),
        Mail::TrialEnding { trial_ends_at } => (
            format!("Your trial of {tenant_name} ends soon"),
            vec![
                Words(format!(
                    "The trial of your workspace {tenant_name} ends on {}.",
                    day(trial_ends_at)
                )),
                Link {
                    words: "Choose a plan to keep working without a pause:".to_owned(),
                    url: link,
                },
            ],
        ),
        Mail::PaymentFailed { grace_ends_at } => (
            format!("Payment needed for {tenant_name}"),
            vec![
                Words(match grace_ends_at {
                    Some(at) => format!(
                        "The subscription of your workspace {tenant_name} is past due (a payment \
                         failed, or the trial ended unpaid). It stays open until {}; after that \
                         it is suspended until paid.",
                        day(at)
                    ),
                    None => format!(
                        "The subscription of your workspace {tenant_name} is past due (a payment \
                         failed, or the trial ended unpaid); it will be suspended unless paid."
                    ),
                }),
                Link {
                    words: "Update your payment method:".to_owned(),
                    url: link,
                },
            ],
        ),
        Mail::Suspended => (
            format!("{tenant_name} is suspended"),
            vec![
                Words(format!(
                    "Your workspace {tenant_name} is suspended for an unpaid subscription. Its \
                     data is kept; pay to open it again."
                )),
                Link {
                    words: "Your workspace:".to_owned(),
                    url: link,
                },
            ],
        ),
    };
    let mut text = String::new();
    let mut html = String::from(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif;line-height:1.5\">",
    );
    for paragraph in &paragraphs {
        match paragraph {
            Words(words) => {
                text.push_str(&format!("{words}\n\n"));
                html.push_str(&format!("<p>{}</p>", escape(words)));
            }
            Link { words, url } => {
                text.push_str(&format!("{words}\n{url}\n\n"));
                html.push_str(&format!(
                    "<p>{}<br><a href=\"{}\">{}</a></p>",
                    escape(words),
                    escape(url),
                    escape(url)
                ));
            }
        }
    }
    text.push_str(&format!("— {tenant_name}, through Silo\n"));
    html.push_str(&format!(
        "<p style=\"color:#555\">— {}, through Silo</p></body></html>",
        escape(tenant_name)
    ));
    Composed {
        subject,
        text,
        html,
    }
}

/// Text made safe inside HTML elements and quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mail_names_its_tenant_and_link_in_text_and_html() {
        let at = Utc::now();
        let mails = [
            Mail::Welcome,
            Mail::PasswordReset {
                origin: "http://a.localhost".to_owned(),
            },
            Mail::TrialEnding { trial_ends_at: at },
            Mail::PaymentFailed {
                grace_ends_at: Some(at),
            },
            Mail::PaymentFailed {
                grace_ends_at: None,
            },
            Mail::Suspended,
        ];
        for mail in &mails {
            let composed = compose(
                mail,
                "Acme Pharmacy",
                "http://acme.localhost:8080/x?a=1&b=2",
            );
            assert!(composed.subject.contains("Acme Pharmacy"), "{mail:?}");
            assert!(composed.text.contains("Acme Pharmacy"), "{mail:?}");
            assert!(
                composed
                    .text
                    .contains("http://acme.localhost:8080/x?a=1&b=2"),
                "{mail:?}"
            );
            assert!(
                composed
                    .html
                    .contains("href=\"http://acme.localhost:8080/x?a=1&amp;b=2\""),
                "{mail:?}"
            );
        }
    }

    #[test]
    fn a_tenant_name_cannot_inject_html() {
        let composed = compose(&Mail::Welcome, "<script>alert(1)</script>", "http://x/");
        assert!(!composed.html.contains("<script>"));
        assert!(composed.html.contains("&lt;script&gt;"));
    }
}
