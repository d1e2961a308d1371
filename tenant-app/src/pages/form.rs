//! Forms that help: every field has a label; the server's field errors (the API's
//! `validation_failed` fields, by the API's field names) appear beside their fields, all at
//! once, with what the user typed kept; focus goes to the first field with an error.

use std::collections::BTreeMap;

use maud::{Markup, html};

/// What is wrong with a submitted form: API field name → problem.
#[derive(Debug, Default)]
pub struct Problems {
    fields: BTreeMap<String, String>,
    /// A problem with the whole submission (not one field's).
    pub general: Option<String>,
}

impl Problems {
    /// The problems an API error names (its fields, else its message).
    pub fn of(error: &web::ApiError) -> Self {
        match &error.fields {
            Some(fields) if !fields.is_empty() => Self {
                fields: fields.clone(),
                general: None,
            },
            _ => Self {
                fields: BTreeMap::new(),
                general: Some(error.message.clone()),
            },
        }
    }

    /// Adds the fields an API error names (keeping any problem already noted for a field).
    pub fn merge(&mut self, error: &web::ApiError) {
        for (field, problem) in error.fields.iter().flatten() {
            self.add(field, problem);
        }
    }

    pub fn add(&mut self, field: &str, problem: &str) {
        self.fields
            .entry(field.to_owned())
            .or_insert_with(|| problem.to_owned());
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }

    /// The problem with `field`, if any.
    pub fn problem(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The first of `order` (the form's fields, top to bottom) that has a problem.
    pub fn first<'a>(&self, order: &[&'a str]) -> Option<&'a str> {
        order
            .iter()
            .copied()
            .find(|field| self.fields.contains_key(*field))
    }
}

/// One input of a form.
pub struct Input<'a> {
    /// The API's field name, which is also the input's name and id.
    pub name: &'a str,
    pub label: &'a str,
    /// `text`, `number`, `email`, `search`, …
    pub kind: &'a str,
    pub value: &'a str,
    pub hint: Option<&'a str>,
    pub required: bool,
    /// The keypad a phone shows (`decimal`).
    pub inputmode: Option<&'a str>,
    /// What a browser may fill in (`username`, `current-password`).
    pub autocomplete: Option<&'a str>,
}

impl<'a> Input<'a> {
    pub fn text(name: &'a str, label: &'a str, value: &'a str) -> Self {
        Self {
            name,
            label,
            kind: "text",
            value,
            hint: None,
            required: false,
            inputmode: None,
            autocomplete: None,
        }
    }

    /// A new password: masked, offered to password managers as new, with the rule as its hint.
    pub fn new_password(label: &'a str) -> Self {
        Self {
            kind: "password",
            autocomplete: Some("new-password"),
            ..Self::text("password", label, "")
                .required()
                .hint("A few uncommon words, or at least 10 varied characters.")
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// A decimal amount (prices, quantities): a text input with the decimal keypad.
    pub fn decimal(mut self) -> Self {
        self.inputmode = Some("decimal");
        self
    }

    /// The label, the input (marked invalid and described by its error when it has one, and
    /// focused when it is `focus`), and the error beside it.
    pub fn render(&self, problems: &Problems, focus: Option<&str>) -> Markup {
        let problem = problems.problem(self.name);
        let error_id = format!("{}-error", self.name);
        let hint_id = format!("{}-hint", self.name);
        let described = match (problem.is_some(), self.hint.is_some()) {
            (true, _) => Some(error_id.as_str()),
            (false, true) => Some(hint_id.as_str()),
            (false, false) => None,
        };
        html! {
            label for=(self.name) {
                (self.label)
                @if !self.required { " " span class="muted" { "(optional)" } }
            }
            @if let Some(hint) = self.hint { p class="muted hint" id=(hint_id) { (hint) } }
            input id=(self.name) name=(self.name) type=(self.kind) value=(self.value)
                required[self.required] inputmode=[self.inputmode] autocomplete=[self.autocomplete]
                autofocus[focus == Some(self.name)]
                aria-invalid=[problem.map(|_| "true")]
                aria-describedby=[described];
            @if let Some(problem) = problem {
                p class="field-error" id=(error_id) { (self.label) " " (problem) "." }
            }
        }
    }
}

pub use crate::common::parse_money;

/// Cents as the amount a person types (`1234.50`), for a form's value.
pub fn money_value(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, (cents % 100).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_people_type_become_cents() {
        assert_eq!(parse_money("12"), Some(1200));
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("1,234.05"), Some(123_405));
        assert_eq!(parse_money(".5"), Some(50));
        assert_eq!(parse_money("0"), Some(0));
        for bad in ["", ".", "-1", "1.234", "12a", "1e5", "9999999999999"] {
            assert_eq!(parse_money(bad), None, "{bad}");
        }
        assert_eq!(money_value(123_405), "1234.05");
    }

    #[test]
    fn an_error_is_beside_its_field_and_the_first_one_has_focus() {
        let mut problems = Problems::default();
        problems.add("name", "must be 1 to 200 characters");
        problems.add("sku", "is required");
        assert_eq!(problems.first(&["sku", "name"]), Some("sku"));
        let focus = problems.first(&["sku", "name"]);
        let sku = Input::text("sku", "SKU", "")
            .required()
            .render(&problems, focus)
            .into_string();
        assert!(sku.contains(r#"aria-invalid="true""#), "{sku}");
        assert!(sku.contains("autofocus"), "{sku}");
        assert!(sku.contains(r#"<p class="field-error" id="sku-error">SKU is required.</p>"#));
        let name = Input::text("name", "Name", "<b>")
            .required()
            .render(&problems, focus)
            .into_string();
        assert!(!name.contains("autofocus"), "{name}");
        assert!(
            name.contains("&lt;b&gt;"),
            "the input is kept, escaped: {name}"
        );
        let fine = Input::text("unit", "Unit", "box")
            .render(&problems, focus)
            .into_string();
        assert!(
            !fine.contains("aria-invalid") && fine.contains("(optional)"),
            "{fine}"
        );
    }
}
