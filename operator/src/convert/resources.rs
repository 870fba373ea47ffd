//! Which Kubernetes resource a series label stands for, as the adapter decides it from a
//! rule's `resources` (`pkg/naming/resource_converter.go`): explicit `overrides` first, then
//! the `template`, a Go template over `.Group` (dots and dashes as `_`) and `.Resource`
//! (singular).

use super::config::ResourceMapping;
use super::template::{self, Action};
use metrics_registry_apiserver::table::ObjectKind;
use std::collections::BTreeMap;

/// A group-resource the adapter could serve metrics for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// One of the kinds metrics-registry serves.
    Object(ObjectKind),
    /// A resource metrics-registry has no definition kind for, as `plural.group`.
    Other(String),
}

impl Resource {
    pub fn name(&self) -> String {
        match self {
            Resource::Object(kind) => kind.resource().to_string(),
            Resource::Other(name) => name.clone(),
        }
    }
}

/// Built-in resources besides the served kinds: labels naming them get a clear line
/// instead of silently meaning nothing. (plural, singular, group)
const OTHER_BUILT_IN: &[(&str, &str, &str)] = &[
    ("nodes", "node", ""),
    ("persistentvolumes", "persistentvolume", ""),
    ("persistentvolumeclaims", "persistentvolumeclaim", ""),
    ("replicationcontrollers", "replicationcontroller", ""),
    ("endpoints", "endpoints", ""),
    ("configmaps", "configmap", ""),
    ("secrets", "secret", ""),
    ("serviceaccounts", "serviceaccount", ""),
    ("events", "event", ""),
    ("limitranges", "limitrange", ""),
    ("resourcequotas", "resourcequota", ""),
    ("podtemplates", "podtemplate", ""),
    ("replicasets", "replicaset", "apps"),
    ("controllerrevisions", "controllerrevision", "apps"),
    ("jobs", "job", "batch"),
    ("cronjobs", "cronjob", "batch"),
    (
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "autoscaling",
    ),
    ("poddisruptionbudgets", "poddisruptionbudget", "policy"),
    ("networkpolicies", "networkpolicy", "networking.k8s.io"),
    ("ingressclasses", "ingressclass", "networking.k8s.io"),
    ("endpointslices", "endpointslice", "discovery.k8s.io"),
    ("leases", "lease", "coordination.k8s.io"),
    ("storageclasses", "storageclass", "storage.k8s.io"),
    ("priorityclasses", "priorityclass", "scheduling.k8s.io"),
    ("runtimeclasses", "runtimeclass", "node.k8s.io"),
    ("roles", "role", "rbac.authorization.k8s.io"),
    ("rolebindings", "rolebinding", "rbac.authorization.k8s.io"),
    ("clusterroles", "clusterrole", "rbac.authorization.k8s.io"),
    (
        "clusterrolebindings",
        "clusterrolebinding",
        "rbac.authorization.k8s.io",
    ),
];

/// The served kinds: (kind, group, singular).
fn served() -> impl Iterator<Item = (ObjectKind, &'static str, &'static str)> {
    ObjectKind::ALL.into_iter().map(|kind| {
        let group = kind
            .resource()
            .split_once('.')
            .map_or("", |(_, group)| group);
        (kind, group, kind.default_label())
    })
}

/// Resolves a group-resource as written in `overrides` (plural or singular, any case, the
/// group optional as `kubectl get` allows). `None`: not a built-in resource (maybe a CRD).
pub fn resolve(group: &str, resource: &str) -> Option<Resource> {
    let resource = resource.to_ascii_lowercase();
    let group_fits = |own: &str| group.is_empty() || group == own;
    for (kind, own_group, singular) in served() {
        let plural = kind.resource().split('.').next().unwrap_or_default();
        if (resource == plural || resource == singular) && group_fits(own_group) {
            return Some(Resource::Object(kind));
        }
    }
    OTHER_BUILT_IN
        .iter()
        .find(|(plural, singular, own)| {
            (resource == *plural || resource == *singular) && group_fits(own)
        })
        .map(|(plural, _, own)| {
            Resource::Other(if own.is_empty() {
                plural.to_string()
            } else {
                format!("{plural}.{own}")
            })
        })
}

/// The label ↔ resource mapping of one rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceLabels {
    /// Label → resource, overrides and template together.
    by_label: BTreeMap<String, Resource>,
    /// Overrides that name no built-in resource: (label, what was written).
    pub unknown: Vec<(String, String)>,
}

impl ResourceLabels {
    pub fn new(mapping: &ResourceMapping) -> Result<ResourceLabels, String> {
        let mut labels = ResourceLabels::default();
        if !mapping.template.is_empty() {
            let pieces = template::parse(&mapping.template)
                .map_err(|e| format!("resources.template {:?}: {e}", mapping.template))?;
            let all = served()
                .map(|(kind, group, singular)| (Resource::Object(kind), group, singular))
                .chain(OTHER_BUILT_IN.iter().map(|(plural, singular, group)| {
                    let name = if group.is_empty() {
                        plural.to_string()
                    } else {
                        format!("{plural}.{group}")
                    };
                    (Resource::Other(name), *group, *singular)
                }));
            for (resource, group, singular) in all {
                let label = render_label(&pieces, group, singular)
                    .map_err(|e| format!("resources.template {:?}: {e}", mapping.template))?;
                labels.by_label.entry(label).or_insert(resource);
            }
        }
        for (label, group_resource) in &mapping.overrides {
            match resolve(&group_resource.group, &group_resource.resource) {
                // An override names the label for its resource, replacing the template's.
                Some(resource) => {
                    labels.by_label.retain(|_, r| *r != resource);
                    labels.by_label.insert(label.clone(), resource);
                }
                None => labels.unknown.push((
                    label.clone(),
                    if group_resource.group.is_empty() {
                        group_resource.resource.clone()
                    } else {
                        format!("{}.{}", group_resource.resource, group_resource.group)
                    },
                )),
            }
        }
        Ok(labels)
    }

    pub fn resource_for(&self, label: &str) -> Option<&Resource> {
        self.by_label.get(label)
    }

    /// The label holding `resource`'s names, if the rule has one.
    pub fn label_for(&self, resource: &Resource) -> Option<&str> {
        self.by_label
            .iter()
            .find(|(_, r)| *r == resource)
            .map(|(label, _)| label.as_str())
    }

    /// Every override label, which a rule means its series to carry.
    pub fn override_labels(&self, mapping: &ResourceMapping) -> Vec<String> {
        mapping
            .overrides
            .keys()
            .filter(|label| self.by_label.contains_key(*label))
            .cloned()
            .collect()
    }
}

/// `template` for one group-resource, as the adapter renders it.
fn render_label(pieces: &[Action], group: &str, singular: &str) -> Result<String, String> {
    let mut label = String::new();
    for piece in pieces {
        match piece {
            Action::Text(text) => label.push_str(text),
            Action::Field(field) if field == "Group" => {
                label.push_str(&group.replace(['.', '-'], "_"))
            }
            Action::Field(field) if field == "Resource" => label.push_str(singular),
            Action::Field(field) => {
                return Err(format!(
                    "<<.{field}>> is not a field here; only <<.Group>> and <<.Resource>> exist"
                ));
            }
        }
    }
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::config::GroupResource;

    fn mapping(template: &str, overrides: &[(&str, &str, &str)]) -> ResourceMapping {
        ResourceMapping {
            template: template.into(),
            overrides: overrides
                .iter()
                .map(|(label, group, resource)| {
                    (
                        label.to_string(),
                        GroupResource {
                            group: group.to_string(),
                            resource: resource.to_string(),
                        },
                    )
                })
                .collect(),
            namespaced: None,
        }
    }

    #[test]
    fn resources_resolve_like_kubectl_names() {
        assert_eq!(resolve("", "pod"), Some(Resource::Object(ObjectKind::Pod)));
        assert_eq!(resolve("", "Pods"), Some(Resource::Object(ObjectKind::Pod)));
        assert_eq!(
            resolve("apps", "deployment"),
            Some(Resource::Object(ObjectKind::Deployment))
        );
        assert_eq!(
            resolve("", "ingress"),
            Some(Resource::Object(ObjectKind::Ingress))
        );
        assert_eq!(resolve("batch", "pod"), None);
        assert_eq!(
            resolve("", "job"),
            Some(Resource::Other("jobs.batch".into()))
        );
        assert_eq!(resolve("", "nodes"), Some(Resource::Other("nodes".into())));
        assert_eq!(resolve("cheese.io", "brand"), None);
    }

    #[test]
    fn overrides_replace_the_template_for_their_resource() {
        let labels = ResourceLabels::new(&mapping(
            "kube_<<.Group>>_<<.Resource>>",
            &[("microservice", "apps", "deployment")],
        ))
        .unwrap();
        assert_eq!(
            labels.resource_for("kube__pod"),
            Some(&Resource::Object(ObjectKind::Pod))
        );
        assert_eq!(
            labels.resource_for("kube_networking_k8s_io_ingress"),
            Some(&Resource::Object(ObjectKind::Ingress))
        );
        assert_eq!(labels.resource_for("kube_apps_deployment"), None);
        assert_eq!(
            labels.label_for(&Resource::Object(ObjectKind::Deployment)),
            Some("microservice")
        );
        assert_eq!(
            labels.resource_for("kube_batch_job"),
            Some(&Resource::Other("jobs.batch".into()))
        );
    }

    #[test]
    fn unknown_overrides_and_template_fields_are_reported() {
        let labels = ResourceLabels::new(&mapping("", &[("brand", "cheese.io", "brand")])).unwrap();
        assert_eq!(
            labels.unknown,
            vec![("brand".to_string(), "brand.cheese.io".to_string())]
        );
        assert!(
            ResourceLabels::new(&mapping("<<.Kind>>", &[]))
                .unwrap_err()
                .contains("<<.Kind>>")
        );
    }
}
