use super::*;
use std::os::unix::fs::symlink;

fn doc(name: &str, series: &str) -> String {
    format!(
        "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {{name: {name}}}\nspec: {{query: '{series}{{<<.LabelMatchers>>}}'}}\n"
    )
}

fn upserted(scan: &Scan) -> Vec<String> {
    scan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(d) => Some(d.id.name.clone()),
            Change::Remove(_) => None,
        })
        .collect()
}

fn removed(scan: &Scan) -> Vec<String> {
    scan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove(id) => Some(id.name.clone()),
            Change::Upsert(_) => None,
        })
        .collect()
}

#[test]
fn only_files_that_changed_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), doc("a", "x")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), doc("b", "x")).unwrap();
    let mut folder = ManifestFolder::new(dir.path());
    let first = folder.scan();
    assert_eq!(
        (upserted(&first), first.files_read),
        (vec!["a".into(), "b".into()], 2)
    );

    let again = folder.scan();
    assert!(
        again.changes.is_empty() && again.files_read == 0,
        "{again:?}"
    );

    std::fs::write(dir.path().join("b.yaml"), doc("b", "y")).unwrap();
    let edit = folder.scan();
    assert_eq!((upserted(&edit), edit.files_read), (vec!["b".into()], 1));

    // Rewritten with the same text: read, but nothing to change.
    std::fs::write(dir.path().join("b.yaml"), doc("b", "y")).unwrap();
    assert!(folder.scan().changes.is_empty());

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    assert_eq!(removed(&folder.scan()), vec!["a".to_string()]);
}

#[test]
fn a_bad_file_never_holds_back_the_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "kind: [unclosed").unwrap();
    std::fs::write(dir.path().join("b.yaml"), doc("b", "x")).unwrap();
    let mut folder = ManifestFolder::new(dir.path());
    let scan = folder.scan();
    assert_eq!(upserted(&scan), vec!["b".to_string()]);
    assert_eq!(scan.problems.len(), 1);
    assert!(
        scan.problems[0]
            .to_string()
            .contains("a.yaml: invalid YAML"),
        "{:?}",
        scan.problems
    );
    // Reported once, not on every scan.
    assert!(folder.scan().problems.is_empty());
}

#[test]
fn empty_broken_and_looping_files_keep_their_last_good_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    std::fs::write(&file, doc("a", "x")).unwrap();
    let mut folder = ManifestFolder::new(dir.path());
    assert_eq!(upserted(&folder.scan()), vec!["a".to_string()]);

    // Truncated, as a tool rewriting in place leaves it for a moment.
    std::fs::write(&file, "").unwrap();
    let scan = folder.scan();
    assert!(scan.changes.is_empty(), "{scan:?}");
    let message = scan.problems[0].to_string();
    assert!(
        message.contains("empty") && message.contains("keeping its last good 1 definition"),
        "{message}"
    );

    std::fs::write(&file, "kind: [unclosed").unwrap();
    let scan = folder.scan();
    assert!(scan.changes.is_empty());
    assert!(
        scan.problems[0].message.contains("invalid YAML"),
        "{:?}",
        scan.problems
    );

    // Back to what it was: nothing to change, and the problem is over.
    std::fs::write(&file, doc("a", "x")).unwrap();
    let scan = folder.scan();
    assert!(
        scan.changes.is_empty() && scan.recovered == vec![file.clone()],
        "{scan:?}"
    );

    std::fs::remove_file(&file).unwrap();
    symlink("a.yaml", &file).unwrap();
    let scan = folder.scan();
    assert!(scan.changes.is_empty(), "{scan:?}");
    assert!(
        scan.problems[0].message.contains("cannot read"),
        "{:?}",
        scan.problems
    );

    std::fs::remove_file(&file).unwrap();
    assert_eq!(removed(&folder.scan()), vec!["a".to_string()]);
}

#[test]
fn a_config_map_data_swap_is_followed() {
    // The layout kubelet gives a mounted ConfigMap, and its atomic update.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..2026_01")).unwrap();
    std::fs::write(root.join("..2026_01/defs.yaml"), doc("a", "old")).unwrap();
    symlink("..2026_01", root.join("..data")).unwrap();
    symlink("..data/defs.yaml", root.join("defs.yaml")).unwrap();
    let mut folder = ManifestFolder::new(root);
    assert_eq!(upserted(&folder.scan()), vec!["a".to_string()]);

    std::fs::create_dir(root.join("..2026_02")).unwrap();
    std::fs::write(root.join("..2026_02/defs.yaml"), doc("a", "new")).unwrap();
    symlink("..2026_02", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_01")).unwrap();
    let scan = folder.scan();
    let [Change::Upsert(definition)] = scan.changes.as_slice() else {
        panic!("{scan:?}")
    };
    let crate::definitions::DefinitionBody::Metric(spec) = &definition.body else {
        panic!()
    };
    assert!(spec.query.starts_with("new"), "{}", spec.query);
}

#[test]
fn a_definition_in_two_files_is_served_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), doc("m", "from_a")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), doc("m", "from_b")).unwrap();
    let mut folder = ManifestFolder::new(dir.path());
    let scan = folder.scan();
    assert_eq!(upserted(&scan), vec!["m".to_string()]);
    assert!(
        scan.problems[0]
            .to_string()
            .contains("b.yaml: ClusterPodMetric m is also defined in"),
        "{:?}",
        scan.problems
    );

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let scan = folder.scan();
    let [Change::Upsert(definition)] = scan.changes.as_slice() else {
        panic!("{scan:?}")
    };
    assert!(format!("{:?}", definition.body).contains("from_b"));
}

#[test]
fn a_missing_folder_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let folder_path = dir.path().join("defs");
    std::fs::create_dir(&folder_path).unwrap();
    std::fs::write(folder_path.join("a.yaml"), doc("a", "x")).unwrap();
    let mut folder = ManifestFolder::new(&folder_path);
    folder.scan();
    std::fs::rename(&folder_path, dir.path().join("old")).unwrap();
    let scan = folder.scan();
    assert!(
        scan.changes.is_empty() && scan.problems.len() == 1,
        "{scan:?}"
    );
    std::fs::rename(dir.path().join("old"), &folder_path).unwrap();
    let scan = folder.scan();
    assert!(
        scan.changes.is_empty() && scan.recovered.len() == 1,
        "{scan:?}"
    );
}
