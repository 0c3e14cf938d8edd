//! How an identity provider's claims become a `Principal`: which claim holds the tenant,
//! the role(s) and the customer id, and how the provider's role names map to ours.
//!
//! A claim name is a path: `realm_access.roles` walks into nested objects (Keycloak),
//! while a namespaced claim such as `https://shop.example/roles` (Auth0), whose name
//! holds dots itself, is found whole. At each level the whole remaining name is tried
//! first, then each prefix ending before a dot.
use super::{Principal, Role};
use crate::domain::{EntityId, TenantId};
use crate::error::{AppError, AppResult};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Where the claims this server needs live in an external token.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub tenant: String,
    pub role: String,
    pub customer: String,
    /// Provider role name -> our role; empty means the names are ours (CUSTOMER, …).
    pub role_map: HashMap<String, Role>,
    /// The role of a token that carries none of the mapped roles; `None` refuses it.
    pub default_role: Option<Role>,
}

impl ClaimMapping {
    /// The principal a verified token's claims describe.
    pub fn principal(&self, claims: &Map<String, Value>) -> AppResult<Principal> {
        let refused = |why: &str| AppError::Unauthenticated(format!("token refused: {why}"));
        let tenant = find(claims, &self.tenant)
            .and_then(Value::as_str)
            .ok_or_else(|| refused(&format!("no '{}' claim (the tenant)", self.tenant)))?;
        let tenant = TenantId::parse(tenant)
            .map_err(|_| refused(&format!("'{}' is not a valid tenant", self.tenant)))?;
        let role = self
            .role_of(find(claims, &self.role))
            .or(self.default_role)
            .ok_or_else(|| refused(&format!("no known role in '{}'", self.role)))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| refused("no numeric 'exp' claim"))?;
        let subject = match role {
            Role::Customer => {
                let raw = find(claims, &self.customer)
                    .and_then(scalar)
                    .ok_or_else(|| {
                        refused(&format!("no '{}' claim (the customer id)", self.customer))
                    })?;
                EntityId::parse("customer", &raw)
                    .map_err(|_| refused(&format!("'{}' is not a customer id", self.customer)))?
                    .get()
                    .to_string()
            }
            Role::Staff | Role::Admin => claims
                .get("sub")
                .and_then(scalar)
                .ok_or_else(|| refused("no 'sub' claim"))?,
        };
        Ok(Principal {
            tenant,
            subject,
            role,
            expires_at: exp,
        })
    }

    /// The most privileged of the roles a claim (a string or an array of strings) names;
    /// names that map to nothing are ignored (`offline_access`, …).
    fn role_of(&self, claim: Option<&Value>) -> Option<Role> {
        let names: Vec<&str> = match claim? {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        names
            .into_iter()
            .filter_map(|name| self.map_role(name))
            .max_by_key(|role| privilege(*role))
    }

    fn map_role(&self, name: &str) -> Option<Role> {
        if self.role_map.is_empty() {
            name.parse().ok()
        } else {
            self.role_map.get(name).copied()
        }
    }
}

fn privilege(role: Role) -> u8 {
    match role {
        Role::Customer => 0,
        Role::Staff => 1,
        Role::Admin => 2,
    }
}

/// A string or an integer claim as text (customer ids may be either).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// The claim at `path`: the whole name first, then a prefix ending before a dot and
/// the rest inside it.
pub fn find<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.match_indices('.').find_map(|(dot, _)| {
        let inner = claims.get(&path[..dot])?.as_object()?;
        find(inner, &path[dot + 1..])
    })
}

/// `JWT_ROLE_MAP`: comma-separated `provider-role=ROLE` pairs.
pub fn parse_role_map(raw: &[String]) -> Result<HashMap<String, Role>, String> {
    let mut map = HashMap::new();
    for pair in raw.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (name, role) = pair
            .rsplit_once('=')
            .ok_or_else(|| format!("'{pair}' is not provider-role=ROLE"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("'{pair}' names no provider role"));
        }
        map.insert(name.to_owned(), role.trim().parse::<Role>()?);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn mapping(role: &str, map: &[(&str, Role)]) -> ClaimMapping {
        ClaimMapping {
            tenant: "tenant".into(),
            role: role.into(),
            customer: "sub".into(),
            role_map: map.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            default_role: None,
        }
    }

    #[test]
    fn paths_walk_nested_objects_and_find_namespaced_claims_whole() {
        let c = claims(json!({
            "realm_access": { "roles": ["a"] },
            "https://shop.example/roles": ["b"],
            "https://shop.example/app": { "tenant.id": "t" },
        }));
        assert_eq!(find(&c, "realm_access.roles"), Some(&json!(["a"])));
        assert_eq!(find(&c, "https://shop.example/roles"), Some(&json!(["b"])));
        assert_eq!(
            find(&c, "https://shop.example/app.tenant.id"),
            Some(&json!("t"))
        );
        assert_eq!(find(&c, "realm_access.missing"), None);
        assert_eq!(find(&c, "realm_access.roles.0"), None);
    }

    #[test]
    fn the_most_privileged_mapped_role_wins_and_unmapped_names_are_ignored() {
        let m = mapping(
            "realm_access.roles",
            &[("shop-staff", Role::Staff), ("shopper", Role::Customer)],
        );
        let c = claims(json!({
            "tenant": "acme", "sub": "kc-1", "exp": 10,
            "realm_access": { "roles": ["offline_access", "shopper", "shop-staff"] },
        }));
        let principal = m.principal(&c).ok();
        assert_eq!(principal.as_ref().map(|p| p.role), Some(Role::Staff));
        assert_eq!(principal.map(|p| p.subject), Some("kc-1".to_owned()));
        // Without a map the names are ours, in any case; ADMIN as a provider name is
        // not ours once a map is set.
        let plain = mapping("role", &[]);
        let c = claims(json!({"tenant": "acme", "sub": "5", "exp": 1, "role": "admin"}));
        assert_eq!(plain.principal(&c).map(|p| p.role).ok(), Some(Role::Admin));
        let mapped = mapping("role", &[("shopper", Role::Customer)]);
        assert!(mapped.principal(&c).is_err());
    }

    #[test]
    fn customers_need_a_customer_id_and_a_default_role_fills_in() {
        let mut m = mapping("roles", &[]);
        m.customer = "https://shop.example/customer_id".into();
        let c = claims(json!({
            "tenant": "acme", "sub": "auth0|abc", "exp": 1,
            "https://shop.example/customer_id": 42,
        }));
        assert!(m.principal(&c).is_err(), "no role and no default role");
        m.default_role = Some(Role::Customer);
        let principal = m.principal(&c).ok();
        assert_eq!(
            principal.and_then(|p| p.customer_id()).map(EntityId::get),
            Some(42)
        );
        let not_an_id = claims(json!({
            "tenant": "acme", "exp": 1, "https://shop.example/customer_id": "auth0|abc",
        }));
        assert!(m.principal(&not_an_id).is_err());
        let no_tenant = claims(json!({"exp": 1, "https://shop.example/customer_id": 4}));
        assert!(m.principal(&no_tenant).is_err());
    }

    #[test]
    fn role_maps_parse_pairs_and_refuse_unknown_roles() {
        let map = parse_role_map(&["shop-admin=ADMIN".into(), " shopper = customer ".into()]);
        assert_eq!(
            map.as_ref().ok().and_then(|m| m.get("shopper")).copied(),
            Some(Role::Customer)
        );
        assert!(parse_role_map(&["x=ROOT".into()]).is_err());
        assert!(parse_role_map(&["ADMIN".into()]).is_err());
        assert!(parse_role_map(&["=ADMIN".into()]).is_err());
    }
}
