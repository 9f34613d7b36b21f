//! What a recipient received, in plain language, generated from its
//! recipe (issue 19: "names and IDs replaced, dates shifted, faces
//! removed from head scans, burned-in text removed").
//!
//! Why generated and not written per recipient: a sentence typed by staff
//! can drift from what the recipe does; these follow the recipe's data.
//! Every PS3.15 option has its sentences in [`option_sentences`], an
//! exhaustive `match`: adding an option to `veil_core::ProfileOption`
//! does not compile until it says what it means for the patient.

use veil_core::ProfileOption;
use veil_rules::{DatePrecision, Recipe, RedactAllText};

/// What an option means for the patient: the sentence when the recipe
/// applies it, and the sentence when it does not (the Basic Profile's
/// behaviour), either possibly absent when there is nothing a patient
/// would recognise.
pub fn option_sentences(o: ProfileOption) -> (Option<&'static str>, Option<&'static str>) {
    use ProfileOption as P;
    match o {
        P::RetainSafePrivate => (
            Some("Manufacturer-specific technical details known to be safe were kept"),
            None,
        ),
        P::RetainUids => (
            Some("The images' internal reference numbers were kept"),
            Some("The images' internal reference numbers were replaced with new ones"),
        ),
        P::RetainDeviceIdentity => (
            Some("Details of the scanner used were kept"),
            Some("Details of the scanner used were removed"),
        ),
        P::RetainInstitutionIdentity => (
            Some("The hospital's name and department were kept"),
            Some("The hospital's name and department were removed"),
        ),
        P::RetainPatientCharacteristics => (
            Some("Your age, sex, height and weight were kept"),
            Some("Your age, sex, height and weight were removed"),
        ),
        P::RetainLongFullDates => (Some("Dates were kept as they were"), None),
        P::RetainLongModifiedDates => (Some("Dates were shifted by a fixed number of days"), None),
        P::CleanDescriptors => (
            Some("Free-text descriptions were cleaned of names and other details"),
            Some("Free-text descriptions were removed"),
        ),
        P::CleanStructuredContent => (
            Some("Reports stored with the images were cleaned of names and other details"),
            None,
        ),
        P::CleanGraphics => (
            Some("Drawings and notes added to the images were cleaned of text"),
            None,
        ),
        P::CleanPixelData => (Some("Burned-in text was removed from the images"), None),
        P::CleanRecognizableVisualFeatures => (Some("Faces were removed from head scans"), None),
    }
}

/// The sentence every recipe starts with: the Basic Profile always
/// replaces names and identifiers (issue 19's first sentence).
pub const BASIC_SENTENCE: &str = "Your name and ID numbers were replaced with codes";

/// The sentences for `recipe`, in a stable order: the Basic Profile,
/// then each option in PS3.15's order, then the recipe's own settings.
pub fn recipe_summary(recipe: &Recipe) -> Vec<String> {
    let mut out = vec![BASIC_SENTENCE.to_string()];
    let has = |o| recipe.options.contains(&o);
    let dates_kept =
        has(ProfileOption::RetainLongFullDates) || has(ProfileOption::RetainLongModifiedDates);
    if !dates_kept {
        out.push("Dates were removed".into());
    }
    for o in ProfileOption::ALL {
        let (on, off) = option_sentences(o);
        if let Some(s) = if has(o) { on } else { off } {
            out.push(s.to_string());
        }
    }
    if recipe.strict {
        out.push("Any other detail not known to be safe was removed".into());
    }
    if recipe.review_burned_in && !has(ProfileOption::CleanPixelData) {
        out.push("Images that may show written text were held for a person to check".into());
    }
    if has(ProfileOption::CleanPixelData) && recipe.pixels.redact_all_text == RedactAllText::Always
    {
        out.push("All text was removed from the images, not only names".into());
    }
    if let Some(y) = recipe.generalize.age_band_years {
        out.push(format!("Your age was given only as a range of {y} years"));
    }
    match recipe.generalize.dates {
        Some(DatePrecision::Month) => out.push("Dates were rounded to the month".into()),
        Some(DatePrecision::Year) => out.push("Dates were rounded to the year".into()),
        None => {}
    }
    if !recipe.generalize.drop.is_empty() {
        out.push("Some further details were removed".into());
    }
    out
}

/// [`recipe_summary`] of a recipe's text (as stored for a recipient).
pub fn recipe_summary_toml(text: &str) -> Result<Vec<String>, String> {
    Recipe::parse(text)
        .map(|r| recipe_summary(&r))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_has_a_sentence_when_applied() {
        let mut seen = std::collections::BTreeSet::new();
        for o in ProfileOption::ALL {
            let (on, _) = option_sentences(o);
            let on = on.unwrap_or_else(|| panic!("{} has no sentence", o.name()));
            assert!(seen.insert(on), "{} shares its sentence", o.name());
            let r = Recipe::parse(&format!("options = [\"{}\"]", o.name())).unwrap();
            assert!(recipe_summary(&r).iter().any(|s| s == on), "{}", o.name());
        }
    }

    #[test]
    fn basic_profile() {
        let s = recipe_summary_toml("").unwrap();
        assert_eq!(s[0], BASIC_SENTENCE);
        assert!(s.contains(&"Dates were removed".to_string()));
        assert!(s.contains(&"Details of the scanner used were removed".to_string()));
        assert!(s.contains(&"The hospital's name and department were removed".to_string()));
        assert!(!s.iter().any(|x| x.contains("Faces")));
    }

    #[test]
    fn the_docs_recipe() {
        // the example recipe of docs/recipes.md, its rule files left out
        // (they are files beside a real recipe)
        let doc = include_str!("../../../docs/recipes.md");
        let toml = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .unwrap()
            .replace(
                "region_rules = [\"site.script\", \"deid.site.dicom\"]",
                "region_rules = []",
            );
        let s = recipe_summary_toml(&toml).unwrap();
        assert_eq!(
            s,
            [
                BASIC_SENTENCE,
                "The images' internal reference numbers were replaced with new ones",
                "Details of the scanner used were removed",
                "The hospital's name and department were removed",
                "Your age, sex, height and weight were removed",
                "Dates were shifted by a fixed number of days",
                "Free-text descriptions were cleaned of names and other details",
                "Images that may show written text were held for a person to check",
                "Your age was given only as a range of 10 years",
                "Dates were rounded to the month",
                "Some further details were removed",
            ]
        );
    }

    #[test]
    fn full_dates_and_pixels() {
        let s = recipe_summary_toml(
            "options = [\"retain-long-full-dates\", \"clean-pixel-data\", \"clean-recognizable-visual-features\"]\n[generalize]\nage_band_years = 10\ndates = \"year\"",
        )
        .unwrap();
        assert!(s.contains(&"Dates were kept as they were".to_string()));
        assert!(!s.iter().any(|x| x.contains("shifted")));
        assert!(s.contains(&"Burned-in text was removed from the images".to_string()));
        assert!(s.contains(&"Faces were removed from head scans".to_string()));
        assert!(s.contains(&"Your age was given only as a range of 10 years".to_string()));
        assert!(s.contains(&"Dates were rounded to the year".to_string()));
    }
}
