//! LTI 1.1 role parsing: short names, context/institution/system URNs and sub-roles.

use serde::Serialize;

/// Which vocabulary a role comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RoleScope {
    /// A role in the course (`Instructor` or `urn:lti:role:ims/lis/Instructor`).
    Context,
    /// A role in the institution (`urn:lti:instrole:ims/lis/...`).
    Institution,
    /// A role in the LMS itself (`urn:lti:sysrole:ims/lis/...`).
    System,
    /// Anything else: it grants nothing.
    Unknown,
}

/// One entry of the `roles` parameter, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    /// The entry exactly as sent (trimmed).
    pub raw: String,
    /// The vocabulary it belongs to.
    pub scope: RoleScope,
    /// The role name (`Instructor`), without its sub-role; empty for unknown entries.
    pub name: String,
    /// The sub-role (`Lecturer` in `urn:lti:role:ims/lis/Instructor/Lecturer`), if any.
    pub sub_role: Option<String>,
}

/// The LIS context roles of LTI 1.1 (case-sensitive, as the specification spells them).
const CONTEXT_ROLES: &[&str] = &[
    "Learner",
    "Instructor",
    "ContentDeveloper",
    "Member",
    "Manager",
    "Mentor",
    "Administrator",
    "TeachingAssistant",
];

const CONTEXT_URN: &str = "urn:lti:role:ims/lis/";
const INSTITUTION_URN: &str = "urn:lti:instrole:ims/lis/";
const SYSTEM_URN: &str = "urn:lti:sysrole:ims/lis/";

impl Role {
    /// Reads one role entry; never fails: what is not recognised is [`RoleScope::Unknown`].
    pub fn parse(entry: &str) -> Role {
        let raw = entry.trim().to_string();
        let (scope, rest) = if let Some(rest) = raw.strip_prefix(CONTEXT_URN) {
            (RoleScope::Context, rest)
        } else if let Some(rest) = raw.strip_prefix(INSTITUTION_URN) {
            (RoleScope::Institution, rest)
        } else if let Some(rest) = raw.strip_prefix(SYSTEM_URN) {
            (RoleScope::System, rest)
        } else if !raw.starts_with("urn:") && CONTEXT_ROLES.contains(&raw.as_str()) {
            // Short names are context roles; sub-roles only exist in URN form.
            (RoleScope::Context, raw.as_str())
        } else {
            (RoleScope::Unknown, "")
        };
        let (name, sub_role) = match rest.split_once('/') {
            Some((name, sub)) => (name.to_string(), Some(sub.to_string())),
            None => (rest.to_string(), None),
        };
        let unknown_context =
            scope == RoleScope::Context && !CONTEXT_ROLES.contains(&name.as_str());
        let scope = if unknown_context || name.is_empty() {
            RoleScope::Unknown
        } else {
            scope
        };
        let name = if scope == RoleScope::Unknown {
            String::new()
        } else {
            name
        };
        let sub_role = if scope == RoleScope::Unknown {
            None
        } else {
            sub_role
        };
        Role {
            raw,
            scope,
            name,
            sub_role,
        }
    }

    /// Staff of the course: a context `Instructor` or `Administrator` (sub-roles included), or an
    /// institution or system `Administrator`. An institution `Instructor` teaches elsewhere, not here.
    pub fn is_staff(&self) -> bool {
        match self.scope {
            RoleScope::Context => self.name == "Instructor" || self.name == "Administrator",
            RoleScope::Institution | RoleScope::System => self.name == "Administrator",
            RoleScope::Unknown => false,
        }
    }

    /// A learner of the course (`Learner`, or Open edX's `Student`).
    pub fn is_learner(&self) -> bool {
        (self.scope == RoleScope::Context && self.name == "Learner") || self.raw == "Student"
    }
}

/// Parses the comma-separated `roles` parameter; empty entries are skipped.
pub fn parse_roles(roles: &str) -> Vec<Role> {
    roles
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(Role::parse)
        .collect()
}

/// True when any of the roles makes the user staff of the course.
pub fn is_staff(roles: &[Role]) -> bool {
    roles.iter().any(Role::is_staff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(s: &str) -> bool {
        is_staff(&parse_roles(s))
    }

    #[test]
    fn staff_roles() {
        for s in [
            "Instructor",
            "Administrator",
            "urn:lti:role:ims/lis/Instructor",
            "urn:lti:role:ims/lis/Instructor/Lecturer",
            "urn:lti:role:ims/lis/Administrator/Administrator",
            "urn:lti:instrole:ims/lis/Administrator",
            "urn:lti:sysrole:ims/lis/Administrator",
            "Learner, Instructor",
            "NotALearner,urn:non:ims/something/Else, Instructor",
            "Instructor,Administrator,urn:lti:instrole:ims/lis/Administrator,urn:lti:sysrole:ims/lis/Administrator",
        ] {
            assert!(staff(s), "{s} should be staff");
        }
    }

    #[test]
    fn non_staff_roles() {
        for s in [
            "",
            " , ",
            "Learner",
            "Student",
            "instructor",
            "INSTRUCTOR",
            "TeachingAssistant",
            "ContentDeveloper",
            "Mentor",
            "urn:lti:instrole:ims/lis/Instructor",
            "urn:lti:role:ims/lis/TeachingAssistant/TeachingAssistantSection",
            "urn:lti:role:ims/lis/Learner/Instructor",
            "urn:lti:role:ims/lis/instructor",
            "urn:lti:role:ims/lis/",
            "urn:non:ims/something/Instructor",
            "Instructor/Lecturer",
            "urn:lti:sysrole:ims/lis/SysAdmin",
        ] {
            assert!(!staff(s), "{s:?} should not be staff");
        }
    }

    #[test]
    fn parses_scope_name_and_sub_role() {
        let r = Role::parse(" urn:lti:role:ims/lis/Instructor/Lecturer ");
        assert_eq!(r.scope, RoleScope::Context);
        assert_eq!(r.name, "Instructor");
        assert_eq!(r.sub_role.as_deref(), Some("Lecturer"));
        assert_eq!(r.raw, "urn:lti:role:ims/lis/Instructor/Lecturer");
        let r = Role::parse("urn:lti:instrole:ims/lis/Faculty");
        assert_eq!(
            (r.scope, r.name.as_str()),
            (RoleScope::Institution, "Faculty")
        );
        assert_eq!(Role::parse("Student").scope, RoleScope::Unknown);
        assert!(Role::parse("Student").is_learner());
        assert!(Role::parse("urn:lti:role:ims/lis/Learner/NonCreditLearner").is_learner());
    }
}
