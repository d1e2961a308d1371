//! Money and quantities, in integers: amounts are whole cents (`i64`), quantities whole
//! thousandths (the database's `numeric(14, 3)`). A line's total is quantity × unit price,
//! rounded half away from zero to a whole cent once per line; a movement's total is the sum of
//! its lines. A line whose total would round to 0 cents at a unit price above 0 is refused
//! (goods would move for nothing), with a 422 naming its quantity.

use web::ApiError;

use crate::common::invalid;

/// Thousandths in one unit of quantity.
const THOUSANDTHS_PER_UNIT: i128 = 1000;

/// The quantity in whole thousandths, if it has at most three decimals (a float's noise, such
/// as `0.1 + 0.2`, does not count as a fourth).
pub fn thousandths(quantity: f64) -> Option<i64> {
    let scaled = quantity * 1000.0;
    let whole = scaled.round();
    ((scaled - whole).abs() <= 1e-6 * whole.abs().max(1.0) && whole.abs() < 1e15)
        .then_some(whole as i64)
}

/// `thousandths` × `unit_cents` / 1000, rounded half away from zero to a whole cent.
pub fn line_total_cents(thousandths: i64, unit_cents: i64) -> i64 {
    let product = i128::from(thousandths) * i128::from(unit_cents);
    let rounded = (product.abs() + THOUSANDTHS_PER_UNIT / 2) / THOUSANDTHS_PER_UNIT;
    let signed = if product < 0 { -rounded } else { rounded };
    i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX })
}

/// A line's total in cents, or a 422 naming `quantity_field` when the quantity has more than
/// three decimals or the total rounds to 0 cents at a price above 0.
pub fn priced_line(quantity_field: &str, quantity: f64, unit_cents: i64) -> Result<i64, ApiError> {
    let thousandths = thousandths(quantity)
        .ok_or_else(|| invalid(quantity_field, "must have at most 3 decimal places"))?;
    let total = line_total_cents(thousandths, unit_cents);
    if total == 0 && unit_cents > 0 {
        return Err(invalid(
            quantity_field,
            &format!(
                "is too small: at {unit_cents} cents a unit the line comes to less than half a \
                 cent; record at least {} units",
                smallest_quantity(unit_cents)
            ),
        ));
    }
    Ok(total)
}

/// The smallest quantity (in units, three decimals) whose line total at `unit_cents` is at
/// least one cent, as text.
fn smallest_quantity(unit_cents: i64) -> String {
    let unit_cents = i128::from(unit_cents.max(1));
    // The least t with t × price ≥ 500 (half a cent, in thousandths of a cent).
    let least = (THOUSANDTHS_PER_UNIT / 2 + unit_cents - 1) / unit_cents;
    format!("{}.{:03}", least / 1000, least % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_totals_round_half_away_from_zero_once_per_line() {
        // (quantity, unit cents, total cents)
        let cases: &[(f64, i64, i64)] = &[
            (1.0, 200, 200),
            (0.005, 100, 1),                                // exactly half a cent: up
            (0.015, 100, 2), // 1.5 cents; as floats 0.015 × 100 is 1.4999…, which rounds down
            (0.004, 100, 0), // 0.4 cents: down
            (1.5, 33, 50),   // 49.5 cents: up
            (2.345, 199, 467), // 466.655 cents
            (0.001, 200, 0), // 0.2 cents
            (9_999_999_999.999, 100_000_000_000, i64::MAX), // saturates rather than wraps
        ];
        for &(quantity, unit_cents, total) in cases {
            let thousandths = thousandths(quantity).expect("three decimals");
            assert_eq!(
                line_total_cents(thousandths, unit_cents),
                total,
                "{quantity} × {unit_cents}"
            );
        }
        assert_eq!(line_total_cents(-5, 100), -1, "away from zero below it too");
    }

    #[test]
    fn quantities_have_at_most_three_decimals() {
        assert_eq!(thousandths(0.1 + 0.2), Some(300));
        assert_eq!(thousandths(12.345), Some(12_345));
        assert_eq!(thousandths(0.0004), None);
        assert_eq!(thousandths(1.2345), None);
    }

    #[test]
    fn a_line_that_rounds_to_nothing_is_refused_naming_its_quantity() {
        let refused = priced_line("lines[0].quantity", 0.001, 200).unwrap_err();
        let fields = refused.fields.expect("names the field");
        let message = fields.get("lines[0].quantity").expect("the quantity");
        assert!(message.contains("at least 0.003 units"), "{message}");
        assert_eq!(priced_line("lines[0].quantity", 0.003, 200).ok(), Some(1));
        assert_eq!(
            priced_line("lines[0].quantity", 0.001, 0).ok(),
            Some(0),
            "free goods"
        );
        assert!(priced_line("lines[0].quantity", 0.0001, 200).is_err());
    }
}
