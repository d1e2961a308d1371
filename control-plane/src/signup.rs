//! Signup validation: what a subdomain, company name, email and password must be, each refusal
//! with its own stable error code.

use secrecy::ExposeSecret as _;

use crate::model::SignupRequest;

/// Subdomains nobody may sign up for: they name Silo's own services or invite phishing.
pub const RESERVED_SUBDOMAINS: &[&str] = &[
    "about",
    "account",
    "accounts",
    "admin",
    "administrator",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "console",
    "dashboard",
    "default",
    "dev",
    "docs",
    "email",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "metrics",
    "mx",
    "ns1",
    "ns2",
    "pop",
    "portal",
    "postgres",
    "root",
    "security",
    "signup",
    "silo",
    "smtp",
    "staging",
    "static",
    "status",
    "support",
    "system",
    "webmail",
    "www",
];

/// The zxcvbn score an admin password needs: Three means "safely unguessable: moderate
/// protection from an offline slow-hash scenario" (about 10^10 guesses).
const MIN_PASSWORD_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Minimum admin password length.
pub const MIN_PASSWORD_LENGTH: usize = 10;

/// A signup whose fields passed validation, normalised.
#[derive(Debug)]
pub struct ValidSignup {
    pub subdomain: String,
    pub company_name: String,
    pub admin_email: String,
}

/// Why a signup's fields were refused; each is one stable error code at the HTTP surface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSignup {
    #[error(
        "The subdomain must be 3 to 63 characters of lowercase letters, digits and single \
         hyphens, starting and ending with a letter or digit."
    )]
    Subdomain,
    #[error("The subdomain `{0}` is reserved. Pick another one.")]
    ReservedSubdomain(String),
    #[error("The company name must be 1 to 200 printable characters.")]
    CompanyName,
    #[error("The admin email must be an address like name@example.com.")]
    Email,
    #[error("The admin password must be at least {MIN_PASSWORD_LENGTH} characters long.")]
    ShortPassword,
    /// Carries zxcvbn's hint, ready for a sentence (` (warning)` or empty).
    #[error(
        "The admin password is too easy to guess{0}. Use a few uncommon words or more varied characters."
    )]
    GuessablePassword(String),
}

impl InvalidSignup {
    /// The signup field this refusal is about.
    pub fn field(&self) -> &'static str {
        match self {
            InvalidSignup::Subdomain | InvalidSignup::ReservedSubdomain(_) => "subdomain",
            InvalidSignup::CompanyName => "company_name",
            InvalidSignup::Email => "admin_email",
            InvalidSignup::ShortPassword | InvalidSignup::GuessablePassword(_) => "admin_password",
        }
    }

    /// The stable error code the HTTP surfaces answer with.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidSignup::Subdomain => "invalid_subdomain",
            InvalidSignup::ReservedSubdomain(_) => "reserved_subdomain",
            InvalidSignup::CompanyName => "invalid_company_name",
            InvalidSignup::Email => "invalid_email",
            InvalidSignup::ShortPassword | InvalidSignup::GuessablePassword(_) => "weak_password",
        }
    }
}

/// Checks a subdomain is a DNS label of 3–63 lowercase letters, digits and inner hyphens.
/// Input is trimmed and lower-cased first, so `Acme` signs up as `acme`.
pub fn validate_subdomain(raw: &str) -> Result<String, InvalidSignup> {
    let subdomain = raw.trim().to_ascii_lowercase();
    let valid = (3..=63).contains(&subdomain.len())
        && subdomain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !subdomain.starts_with('-')
        && !subdomain.ends_with('-')
        // "xn--" labels are punycode; refusing `--` keeps look-alike names out.
        && !subdomain.contains("--");
    if !valid {
        return Err(InvalidSignup::Subdomain);
    }
    if RESERVED_SUBDOMAINS.contains(&subdomain.as_str()) {
        return Err(InvalidSignup::ReservedSubdomain(subdomain));
    }
    Ok(subdomain)
}

/// Whether `email` (already trimmed) looks like `name@example.com`.
pub fn is_plausible_email(email: &str) -> bool {
    email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

fn validate_email(raw: &str) -> Result<String, InvalidSignup> {
    let email = raw.trim().to_owned();
    if !is_plausible_email(&email) {
        return Err(InvalidSignup::Email);
    }
    Ok(email)
}

/// Whether `password` is hard enough to guess (zxcvbn score three or more), counting `known`
/// words (the account's own names) as guessable. `Err` carries zxcvbn's warning, if any, as
/// ` (warning)`, ready to put into a sentence. The length is checked separately.
pub fn check_password_strength(password: &str, known: &[&str]) -> Result<(), String> {
    let estimate = zxcvbn::zxcvbn(password, known);
    if estimate.score() >= MIN_PASSWORD_SCORE {
        return Ok(());
    }
    Err(estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| format!(" ({warning})"))
        .unwrap_or_default())
}

/// Validates every field of a signup; the first problem found is reported.
pub fn validate(request: &SignupRequest) -> Result<ValidSignup, InvalidSignup> {
    validate_all(request).map_err(|mut problems| problems.remove(0))
}

/// Validates every field of a signup and reports every problem, in the form's order (subdomain,
/// company name, email, password); never an empty list.
pub fn validate_all(request: &SignupRequest) -> Result<ValidSignup, Vec<InvalidSignup>> {
    let subdomain = validate_subdomain(&request.subdomain);
    let company_name = request.company_name.trim().to_owned();
    let company = if company_name.is_empty()
        || company_name.chars().count() > 200
        || company_name.chars().any(char::is_control)
    {
        Err(InvalidSignup::CompanyName)
    } else {
        Ok(())
    };
    let admin_email = validate_email(&request.admin_email);
    let password = check_password(
        request.admin_password.expose_secret(),
        subdomain.as_deref().unwrap_or(""),
        &company_name,
        admin_email.as_deref().unwrap_or(""),
    );
    match (subdomain, company, admin_email, password) {
        (Ok(subdomain), Ok(()), Ok(admin_email), Ok(())) => Ok(ValidSignup {
            subdomain,
            company_name,
            admin_email,
        }),
        (subdomain, company, admin_email, password) => Err([
            subdomain.err(),
            company.err(),
            admin_email.err(),
            password.err(),
        ]
        .into_iter()
        .flatten()
        .collect()),
    }
}

/// Long enough, and hard to guess given the signup's own words.
fn check_password(
    password: &str,
    subdomain: &str,
    company_name: &str,
    admin_email: &str,
) -> Result<(), InvalidSignup> {
    if password.chars().count() < MIN_PASSWORD_LENGTH || password.len() > 1024 {
        return Err(InvalidSignup::ShortPassword);
    }
    // Long is not enough: zxcvbn estimates how guessable it is (common passwords, words,
    // keyboard walks, and the signup's own subdomain, company and email).
    // The signup's own words count as known: whole, joined without spaces, and word by word.
    let joined: String = company_name.split_whitespace().collect();
    let mut known: Vec<&str> = vec![subdomain, company_name, &joined];
    known.extend(admin_email.split(['@', '.', '-', '_', '+']));
    known.extend(company_name.split(|c: char| !c.is_alphanumeric()));
    known.retain(|word| word.chars().count() >= 3);
    check_password_strength(password, &known).map_err(InvalidSignup::GuessablePassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once_in_the_forms_order() {
        let request = SignupRequest {
            company_name: "  ".into(),
            subdomain: "ab".into(),
            admin_email: "nobody".into(),
            admin_password: secrecy::SecretString::from("short"),
        };
        let problems = validate_all(&request).expect_err("all wrong");
        let fields: Vec<&str> = problems.iter().map(InvalidSignup::field).collect();
        assert_eq!(
            fields,
            ["subdomain", "company_name", "admin_email", "admin_password"]
        );
        assert_eq!(
            validate(&request).expect_err("wrong"),
            InvalidSignup::Subdomain
        );
    }

    #[test]
    fn subdomains() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("acme", Ok("acme")),
            ("  Acme-Pharmacy ", Ok("acme-pharmacy")),
            ("a1b", Ok("a1b")),
            ("ab", Err("invalid_subdomain")),
            (&"a".repeat(63), Ok(&"a".repeat(63))),
            (&"a".repeat(64), Err("invalid_subdomain")),
            ("-acme", Err("invalid_subdomain")),
            ("acme-", Err("invalid_subdomain")),
            ("ac--me", Err("invalid_subdomain")),
            ("xn--80ak6aa92e", Err("invalid_subdomain")),
            ("ac.me", Err("invalid_subdomain")),
            ("ac_me", Err("invalid_subdomain")),
            ("acmé", Err("invalid_subdomain")),
            ("", Err("invalid_subdomain")),
            ("www", Err("reserved_subdomain")),
            ("ADMIN", Err("reserved_subdomain")),
            ("api", Err("reserved_subdomain")),
            ("app", Err("reserved_subdomain")),
        ];
        for (input, expected) in cases {
            let got = validate_subdomain(input).map_err(|error| error.code());
            assert_eq!(got, (*expected).map(String::from), "input {input:?}");
        }
    }

    fn request(company: &str, subdomain: &str, email: &str, password: &str) -> SignupRequest {
        SignupRequest {
            company_name: company.into(),
            subdomain: subdomain.into(),
            admin_email: email.into(),
            admin_password: password.to_owned().into(),
        }
    }

    #[test]
    fn whole_signups() {
        let cases: &[(SignupRequest, Option<&str>)] = &[
            (
                request("Acme", "acme", "a@acme.test", "violet tram oyster gravel"),
                None,
            ),
            (
                request("  ", "acme", "a@acme.test", "violet tram oyster gravel"),
                Some("invalid_company_name"),
            ),
            (
                request(
                    &"x".repeat(201),
                    "acme",
                    "a@acme.test",
                    "violet tram oyster gravel",
                ),
                Some("invalid_company_name"),
            ),
            (
                request("Acme", "acme", "not-an-email", "violet tram oyster gravel"),
                Some("invalid_email"),
            ),
            (
                request("Acme", "acme", "a@b", "violet tram oyster gravel"),
                Some("invalid_email"),
            ),
            (
                request("Acme", "acme", "a b@acme.test", "violet tram oyster gravel"),
                Some("invalid_email"),
            ),
            (
                request("Acme", "acme", "a@acme.test", "short"),
                Some("weak_password"),
            ),
            // Long but guessable: a common password, a keyboard walk, the signup's own names.
            (
                request("Acme", "acme", "a@acme.test", "password1234"),
                Some("weak_password"),
            ),
            (
                request("Acme", "acme", "a@acme.test", "qwertyuiopasdf"),
                Some("weak_password"),
            ),
            (
                request("Acme Pharmacy", "acme", "a@acme.test", "acmepharmacy1"),
                Some("weak_password"),
            ),
            (
                request("Acme", "w", "a@acme.test", "violet tram oyster gravel"),
                Some("invalid_subdomain"),
            ),
        ];
        for (input, expected) in cases {
            let got = validate(input).err().map(|error| error.code());
            assert_eq!(
                got,
                *expected,
                "{:?}",
                (&input.company_name, &input.subdomain, &input.admin_email)
            );
        }
    }
}
