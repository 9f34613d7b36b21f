//! The PS3.15 Annex E profile options, by the kebab-case names that Veil's
//! command line and recipes use (a contract with other tools).

use std::fmt;
use std::str::FromStr;

/// One option of the Basic Application Level Confidentiality Profile.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum ProfileOption {
    /// Retain Safe Private Option
    RetainSafePrivate,
    /// Retain UIDs Option
    RetainUids,
    /// Retain Device Identity Option
    RetainDeviceIdentity,
    /// Retain Institution Identity Option
    RetainInstitutionIdentity,
    /// Retain Patient Characteristics Option
    RetainPatientCharacteristics,
    /// Retain Longitudinal Temporal Information with Full Dates Option
    RetainLongFullDates,
    /// Retain Longitudinal Temporal Information with Modified Dates Option
    RetainLongModifiedDates,
    /// Clean Descriptors Option
    CleanDescriptors,
    /// Clean Structured Content Option
    CleanStructuredContent,
    /// Clean Graphics Option
    CleanGraphics,
    /// Clean Pixel Data Option (a pixel stage, not a header column)
    CleanPixelData,
    /// Clean Recognizable Visual Features Option (a pixel stage)
    CleanRecognizableVisualFeatures,
}

impl ProfileOption {
    /// Every option, in the order of PS3.15 Table E.1-1's columns, then the
    /// two pixel options.
    pub const ALL: [ProfileOption; 12] = [
        ProfileOption::RetainSafePrivate,
        ProfileOption::RetainUids,
        ProfileOption::RetainDeviceIdentity,
        ProfileOption::RetainInstitutionIdentity,
        ProfileOption::RetainPatientCharacteristics,
        ProfileOption::RetainLongFullDates,
        ProfileOption::RetainLongModifiedDates,
        ProfileOption::CleanDescriptors,
        ProfileOption::CleanStructuredContent,
        ProfileOption::CleanGraphics,
        ProfileOption::CleanPixelData,
        ProfileOption::CleanRecognizableVisualFeatures,
    ];

    /// The command-line / recipe name.
    pub fn name(self) -> &'static str {
        match self {
            ProfileOption::RetainSafePrivate => "retain-safe-private",
            ProfileOption::RetainUids => "retain-uids",
            ProfileOption::RetainDeviceIdentity => "retain-device-identity",
            ProfileOption::RetainInstitutionIdentity => "retain-institution-identity",
            ProfileOption::RetainPatientCharacteristics => "retain-patient-characteristics",
            ProfileOption::RetainLongFullDates => "retain-long-full-dates",
            ProfileOption::RetainLongModifiedDates => "retain-long-modified-dates",
            ProfileOption::CleanDescriptors => "clean-descriptors",
            ProfileOption::CleanStructuredContent => "clean-structured-content",
            ProfileOption::CleanGraphics => "clean-graphics",
            ProfileOption::CleanPixelData => "clean-pixel-data",
            ProfileOption::CleanRecognizableVisualFeatures => "clean-recognizable-visual-features",
        }
    }

    /// Options whose work is done by a pixel stage rather than header rules.
    pub fn is_pixel_stage(self) -> bool {
        matches!(
            self,
            ProfileOption::CleanPixelData | ProfileOption::CleanRecognizableVisualFeatures
        )
    }
}

impl fmt::Display for ProfileOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An option name that Veil does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOption(pub String);

impl fmt::Display for UnknownOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown option '{}'; known options: {}",
            self.0,
            ProfileOption::ALL.map(|o| o.name()).join(", ")
        )
    }
}

impl std::error::Error for UnknownOption {}

impl FromStr for ProfileOption {
    type Err = UnknownOption;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileOption::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| UnknownOption(s.to_string()))
    }
}

impl serde::Serialize for ProfileOption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ProfileOption {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in ProfileOption::ALL {
            assert_eq!(o.name().parse::<ProfileOption>().unwrap(), o);
        }
        assert!("retain-everything".parse::<ProfileOption>().is_err());
    }
}
