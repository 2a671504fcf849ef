//! Explaining a launch to a person debugging their LMS: parameters grouped, roles read one by one,
//! recommended fields that are missing and the usual reason.

use serde::Serialize;

use super::roles::{Role, RoleScope};

/// A named group of parameters.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Group<'a> {
    /// "LTI core", "User", ...
    pub name: &'static str,
    /// Parameters in the order received.
    pub params: Vec<(&'a str, &'a str)>,
}

/// The group a parameter belongs to.
pub fn group_of(name: &str) -> &'static str {
    match name {
        _ if name.starts_with("custom_") => "Custom",
        _ if name.starts_with("ext_") => "Extensions",
        _ if name.starts_with("oauth_") => "OAuth",
        _ if name.starts_with("context_") => "Context",
        "lis_outcome_service_url"
        | "lis_result_sourcedid"
        | "lis_course_offering_sourcedid"
        | "lis_course_section_sourcedid" => "Outcomes",
        "user_id" | "roles" | "user_image" | "role_scope_mentor" => "User",
        _ if name.starts_with("lis_person_") => "User",
        _ if name.starts_with("lti_")
            || name.starts_with("resource_link_")
            || name.starts_with("launch_presentation_")
            || name.starts_with("tool_consumer_") =>
        {
            "LTI core"
        }
        _ => "Other",
    }
}

const GROUPS: [&str; 8] = [
    "LTI core",
    "User",
    "Context",
    "Outcomes",
    "Custom",
    "Extensions",
    "OAuth",
    "Other",
];

/// Groups parameters (never `oauth_signature`), keeping only the groups that have any.
pub fn group_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = GROUPS
        .iter()
        .map(|name| Group {
            name,
            params: Vec::new(),
        })
        .collect();
    for (name, value) in params {
        if name == "oauth_signature" {
            continue;
        }
        let g = group_of(name);
        if let Some(group) = groups.iter_mut().find(|x| x.name == g) {
            group.params.push((name, value));
        }
    }
    groups.retain(|g| !g.params.is_empty());
    groups
}

/// How one role entry was read.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RoleReading {
    /// The entry as sent.
    pub raw: String,
    /// What we recognised it as.
    pub read_as: String,
    /// Whether it makes the user course staff.
    pub staff: bool,
    /// Why (or why not).
    pub why: String,
}

/// Explains each role entry.
pub fn explain_roles(roles: &[Role]) -> Vec<RoleReading> {
    roles
        .iter()
        .map(|role| {
            let sub = role.sub_role.as_deref().map(|s| format!(" (sub-role {s})")).unwrap_or_default();
            let (read_as, why) = match role.scope {
                RoleScope::Context => (
                    format!("course role {}{sub}", role.name),
                    if role.is_staff() {
                        format!("a course {} is staff", role.name)
                    } else {
                        format!("a course {} is not staff", role.name)
                    },
                ),
                RoleScope::Institution => (
                    format!("institution role {}{sub}", role.name),
                    if role.is_staff() {
                        "an institution Administrator is staff everywhere".to_string()
                    } else if role.name == "Instructor" {
                        "an institution Instructor teaches somewhere in the school, not necessarily this course".into()
                    } else {
                        format!("an institution {} is not staff of the course", role.name)
                    },
                ),
                RoleScope::System => (
                    format!("system role {}{sub}", role.name),
                    if role.is_staff() {
                        "a system Administrator is staff everywhere".to_string()
                    } else {
                        format!("a system {} is not staff of the course", role.name)
                    },
                ),
                RoleScope::Unknown => (
                    "unknown".to_string(),
                    if role.raw == "Student" {
                        "Open edX's Student: a learner, no privileges".to_string()
                    } else if ["instructor", "administrator", "learner"].contains(&role.raw.to_ascii_lowercase().as_str()) {
                        "role names are case-sensitive: unknown roles get no privileges".into()
                    } else {
                        "not an LTI 1.1 role: unknown roles get no privileges".into()
                    },
                ),
            };
            RoleReading { raw: role.raw.clone(), read_as, staff: role.is_staff(), why }
        })
        .collect()
}

/// Recommended fields the launch lacks, with the usual reason.
pub fn missing_recommended<'a>(present: impl Fn(&str) -> bool) -> Vec<(&'a str, &'a str)> {
    const RECOMMENDED: [(&str, &str); 8] = [
        (
            "user_id",
            "an anonymous launch: the LMS privacy setting sends no user id",
        ),
        (
            "roles",
            "no roles: the user gets no privileges; check the LMS sends roles",
        ),
        (
            "lis_person_name_full",
            "no name: the LMS privacy setting is anonymous or withholds names",
        ),
        (
            "lis_person_contact_email_primary",
            "no email: the LMS privacy setting withholds email addresses",
        ),
        (
            "context_id",
            "no course: the tool was launched outside a course",
        ),
        (
            "launch_presentation_return_url",
            "errors cannot be sent back to the LMS",
        ),
        (
            "tool_consumer_instance_guid",
            "the LMS instance cannot be told apart from others using the same key",
        ),
        (
            "lis_outcome_service_url",
            "no grade passback: the link does not accept grades, or the user is not a learner",
        ),
    ];
    RECOMMENDED
        .iter()
        .filter(|(name, _)| {
            !present(name)
                && !(*name == "lis_person_name_full"
                    && (present("lis_person_name_given") || present("lis_person_name_family")))
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lti::roles::parse_roles;

    #[test]
    fn groups_params_and_hides_the_signature() {
        let params = [
            ("lti_version", "LTI-1p0"),
            ("user_id", "u"),
            ("lis_person_name_full", "A"),
            ("context_id", "c"),
            ("lis_result_sourcedid", "s"),
            ("custom_x", "1"),
            ("ext_lms", "m"),
            ("oauth_nonce", "n"),
            ("oauth_signature", "SECRET-ish"),
            ("something", "else"),
        ];
        let groups = group_params(params);
        let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
        assert_eq!(names, GROUPS);
        assert!(groups
            .iter()
            .all(|g| g.params.iter().all(|(n, _)| *n != "oauth_signature")));
    }

    #[test]
    fn explains_each_role() {
        let r = explain_roles(&parse_roles(
            "urn:lti:instrole:ims/lis/Instructor, instructor, Instructor/x",
        ));
        assert!(!r[0].staff && r[0].why.contains("not necessarily this course"));
        assert!(r[1].why.contains("case-sensitive"));
        assert_eq!(r[2].read_as, "unknown");
        let r = explain_roles(&parse_roles("urn:lti:role:ims/lis/Instructor/Lecturer"));
        assert!(r[0].staff);
        assert_eq!(r[0].read_as, "course role Instructor (sub-role Lecturer)");
    }

    #[test]
    fn missing_fields_with_reasons() {
        let missing = missing_recommended(|n| n == "user_id" || n == "lis_person_name_given");
        let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
        assert!(!names.contains(&"user_id"));
        assert!(!names.contains(&"lis_person_name_full"));
        assert!(names.contains(&"lis_person_contact_email_primary"));
    }
}
