mod support;

use modeldesk::mlflow::yaml;

#[test]
fn every_mlmodel_mlflow_wrote_is_re_emitted_byte_for_byte() {
    let root = support::shared().join("fixtures/mlflow-examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let path = dir.join("MLmodel");
        if !(name.starts_with("v2-") || name.starts_with("v3-")) || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let node = yaml::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(yaml::emit(&node), text, "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}
