//! The category tree (诉求分类, two to three levels), shipped as data.
//!
//! Tickets carry their category as a path of up to three segments joined by
//! '/', e.g. "城乡建设/市容环境/占道经营". The tree is a TOML file
//! (`node/data/categories.toml`, format in `node/data/README.md`) embedded at
//! build time and replaceable at run time by parsing another text, so a
//! centre can adopt its local code list (e.g. DB44/T 2479) without a rebuild.
//!
//! Ordered: nodes keep file order, which is the order operators see them in.

/// Maximum depth of the tree (一级/二级/三级).
pub const MAX_DEPTH: usize = 3;
/// How many valid children an unknown-segment error lists.
const SUGGESTIONS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    name: String,
    children: Vec<Node>,
}

/// The category tree: ordered top-level classes, each with ordered children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryTree {
    source: String,
    roots: Vec<Node>,
}

impl CategoryTree {
    pub const BUILTIN_TOML: &'static str = include_str!("../../data/categories.toml");

    /// The tree shipped in `node/data/categories.toml`.
    pub fn builtin() -> CategoryTree {
        CategoryTree::parse(Self::BUILTIN_TOML)
            .unwrap_or_else(|e| panic!("builtin categories.toml is invalid: {e}"))
    }

    /// Parses a tree. Rejected, naming the place: TOML errors, unknown keys,
    /// an empty tree, empty names or names with surrounding blanks, names
    /// containing '/', duplicate siblings, and depth over three.
    pub fn parse(text: &str) -> Result<CategoryTree, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("categories: {e}"))?;
        let mut source = String::new();
        let mut roots = Vec::new();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("source", toml::Value::String(s)) => source = s.clone(),
                ("class", toml::Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("class[{}]", i + 1);
                        match item {
                            toml::Value::Table(t) => roots.push(node_from_table(t, &at, 1)?),
                            other => {
                                return Err(format!(
                                    "categories: {at} must be a [[class]] table, found {}",
                                    other.type_str()
                                ));
                            }
                        }
                    }
                }
                ("source" | "class", other) => {
                    return Err(format!(
                        "categories: `{key}` has the wrong type ({})",
                        other.type_str()
                    ));
                }
                _ => {
                    return Err(format!(
                        "categories: unknown key `{key}` (expected `source` and [[class]])"
                    ));
                }
            }
        }
        if roots.is_empty() {
            return Err("categories: the tree is empty (no [[class]])".into());
        }
        check_siblings(&roots, "the top level")?;
        Ok(CategoryTree { source, roots })
    }

    /// Checks that `path` ("城乡建设", "城乡建设/市容环境" or three levels)
    /// names a node of the tree. The error names the unknown segment and
    /// lists up to five valid choices at that level.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if path.is_empty() {
            return Err(format!(
                "category is empty; top-level classes are: {}",
                list(&self.roots)
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() > MAX_DEPTH {
            return Err(format!(
                "category \"{path}\" has {} levels; at most {MAX_DEPTH}",
                segments.len()
            ));
        }
        let mut level: &[Node] = &self.roots;
        for (i, seg) in segments.iter().enumerate() {
            let parent = segments[..i].join("/");
            if seg.is_empty() {
                return Err(format!("category \"{path}\" has an empty segment"));
            }
            if level.is_empty() {
                return Err(format!(
                    "category \"{path}\": \"{parent}\" has no subcategories, so \"{seg}\" is unknown"
                ));
            }
            match level.iter().find(|n| n.name == *seg) {
                Some(n) => level = &n.children,
                None if i == 0 => {
                    return Err(format!(
                        "category \"{path}\": unknown top-level class \"{seg}\"; valid: {}",
                        list(level)
                    ));
                }
                None => {
                    return Err(format!(
                        "category \"{path}\": unknown \"{seg}\" under \"{parent}\"; valid: {}",
                        list(level)
                    ));
                }
            }
        }
        Ok(())
    }

    /// The top-level classes, in file order.
    pub fn top_level(&self) -> Vec<&str> {
        self.roots.iter().map(|n| n.name.as_str()).collect()
    }

    /// The children of the node at `path`, in file order; the top level for
    /// "", nothing for an unknown path or a leaf.
    pub fn children(&self, path: &str) -> Vec<&str> {
        if path.is_empty() {
            return self.top_level();
        }
        let mut level: &[Node] = &self.roots;
        for seg in path.split('/') {
            match level.iter().find(|n| n.name == seg) {
                Some(n) => level = &n.children,
                None => return Vec::new(),
            }
        }
        level.iter().map(|n| n.name.as_str()).collect()
    }

    /// The number of nodes at all levels.
    pub fn len(&self) -> usize {
        fn count(nodes: &[Node]) -> usize {
            nodes.iter().map(|n| 1 + count(&n.children)).sum()
        }
        count(&self.roots)
    }

    /// Never true for a parsed tree (an empty tree is rejected).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Where the tree comes from (the file's `source`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Up to five names of `nodes`, and how many more there are.
fn list(nodes: &[Node]) -> String {
    let mut s = nodes
        .iter()
        .take(SUGGESTIONS)
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if nodes.len() > SUGGESTIONS {
        s.push_str(&format!(" (and {} more)", nodes.len() - SUGGESTIONS));
    }
    s
}

/// A node written as a table: `{ name = "...", sub = [...] }`.
fn node_from_table(t: &toml::Table, at: &str, depth: usize) -> Result<Node, String> {
    for key in t.keys() {
        if key != "name" && key != "sub" {
            return Err(format!(
                "categories: {at}: unknown key `{key}` (expected `name` and `sub`)"
            ));
        }
    }
    let name = match t.get("name") {
        Some(toml::Value::String(s)) => check_name(s, at)?,
        Some(other) => {
            return Err(format!(
                "categories: {at}: `name` must be a string, found {}",
                other.type_str()
            ));
        }
        None => return Err(format!("categories: {at}: `name` is missing")),
    };
    let at = format!("{at} \"{name}\"");
    let mut children = Vec::new();
    match t.get("sub") {
        None => {}
        Some(toml::Value::Array(items)) => {
            if !items.is_empty() && depth >= MAX_DEPTH {
                return Err(format!(
                    "categories: {at} has subcategories, but the tree is at most {MAX_DEPTH} levels deep"
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let item_at = format!("{at} → sub[{}]", i + 1);
                children.push(match item {
                    toml::Value::String(s) => Node {
                        name: check_name(s, &item_at)?,
                        children: Vec::new(),
                    },
                    toml::Value::Table(t) => node_from_table(t, &item_at, depth + 1)?,
                    other => {
                        return Err(format!(
                            "categories: {item_at} must be a name or a {{ name, sub }} table, found {}",
                            other.type_str()
                        ));
                    }
                });
            }
            check_siblings(&children, &at)?;
        }
        Some(other) => {
            return Err(format!(
                "categories: {at}: `sub` must be an array, found {}",
                other.type_str()
            ));
        }
    }
    Ok(Node { name, children })
}

fn check_name(s: &str, at: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(format!("categories: {at}: empty name"));
    }
    if s.trim() != s {
        return Err(format!(
            "categories: {at}: name \"{s}\" has leading or trailing blanks"
        ));
    }
    if s.contains('/') {
        return Err(format!(
            "categories: {at}: name \"{s}\" contains '/', which separates levels"
        ));
    }
    Ok(s.to_string())
}

fn check_siblings(nodes: &[Node], at: &str) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for n in nodes {
        if !seen.insert(n.name.as_str()) {
            return Err(format!(
                "categories: {at}: \"{}\" appears twice among siblings",
                n.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: [&str; 16] = [
        "城乡建设",
        "环境保护",
        "交通运输",
        "劳动和社会保障",
        "卫生计生",
        "教育文体",
        "商贸旅游",
        "民政",
        "农村农业",
        "国土资源",
        "经济管理",
        "科技与信息产业",
        "政法",
        "党务政务",
        "纪检监察",
        "水电气热",
    ];

    #[test]
    fn builtin_tree_shape() {
        let t = CategoryTree::builtin();
        let top = t.top_level();
        assert_eq!(top.len(), 16);
        for name in TOP {
            assert!(top.contains(&name), "{name} is a top-level class");
        }
        for name in &top {
            let n = t.children(name).len();
            assert!((3..=8).contains(&n), "{name} has {n} second-level classes");
        }
        assert!(!t.source().is_empty());
        assert!(t.len() > 16 + 16 * 3);
        assert!(!t.is_empty());
        // Named in the brief and in the Jinan holiday report (seed 004).
        for p in [
            "城乡建设/市容环境",
            "城乡建设/物业管理",
            "城乡建设/房屋安全",
            "城乡建设/市政道路",
            "城乡建设/违法建设",
            "城乡建设/城市管理",
            "城乡建设/住房",
            "水电气热/供水",
            "水电气热/供电",
            "水电气热/燃气",
            "水电气热/供热",
            "水电气热/居民生活",
            "劳动和社会保障/欠薪",
            "劳动和社会保障/社会保险",
            "劳动和社会保障/就业",
            "劳动和社会保障/劳动关系",
            "交通运输/交通出行",
            "政法/社会治安",
            "教育文体/教育",
        ] {
            assert_eq!(t.validate(p), Ok(()), "{p}");
        }
        assert_eq!(t.validate("城乡建设/市容环境/占道经营"), Ok(()));
    }

    #[test]
    fn validate_names_the_unknown_segment() {
        let t = CategoryTree::builtin();
        assert_eq!(t.validate("城乡建设"), Ok(()));

        let e = t.validate("城市建设").unwrap_err();
        assert!(
            e.contains("\"城市建设\"") && e.contains("城乡建设, 环境保护"),
            "{e}"
        );
        assert!(e.contains("more"), "{e}");

        let e = t.validate("城乡建设/市容").unwrap_err();
        assert!(
            e.contains("\"市容\"") && e.contains("under \"城乡建设\""),
            "{e}"
        );
        assert!(e.contains("市容环境"), "{e}");

        let e = t.validate("城乡建设/市容环境/无此项").unwrap_err();
        assert!(
            e.contains("\"无此项\"") && e.contains("under \"城乡建设/市容环境\""),
            "{e}"
        );

        let e = t.validate("城乡建设/违法建设/x").unwrap_err();
        assert!(e.contains("no subcategories"), "{e}");

        let e = t.validate("城乡建设/市容环境/占道经营/x").unwrap_err();
        assert!(e.contains("at most 3"), "{e}");

        let e = t.validate("城乡建设//占道经营").unwrap_err();
        assert!(e.contains("empty segment"), "{e}");
        let e = t.validate("城乡建设/").unwrap_err();
        assert!(e.contains("empty segment"), "{e}");
        let e = t.validate("").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn children_and_len() {
        let t = CategoryTree::parse(
            "source = \"t\"\n\
             [[class]]\nname = \"B\"\nsub = [{ name = \"b1\", sub = [\"x\", \"y\"] }, \"b2\"]\n\
             [[class]]\nname = \"A\"\n",
        )
        .unwrap();
        assert_eq!(t.top_level(), vec!["B", "A"], "file order, not sorted");
        assert_eq!(t.children(""), vec!["B", "A"]);
        assert_eq!(t.children("B"), vec!["b1", "b2"]);
        assert_eq!(t.children("B/b1"), vec!["x", "y"]);
        assert!(t.children("B/b2").is_empty());
        assert!(t.children("C").is_empty());
        assert!(t.children("B/b1/x/z").is_empty());
        assert_eq!(t.len(), 6);
        assert_eq!(t.validate("B/b1/y"), Ok(()));
    }

    #[test]
    fn parse_rejects_bad_trees() {
        let e = |s: &str| CategoryTree::parse(s).unwrap_err();

        let m = e("source = \"x\"\n");
        assert!(m.contains("empty"), "{m}");
        let m = e("[[class]]\nname = \"A\"\n[[class]]\nname = \"A\"\n");
        assert!(m.contains("\"A\" appears twice"), "{m}");
        let m = e("[[class]]\nname = \"A\"\nsub = [\"a\", \"b\", \"a\"]\n");
        assert!(
            m.contains("\"a\" appears twice") && m.contains("\"A\""),
            "{m}"
        );
        let m = e("[[class]]\nname = \"\"\n");
        assert!(m.contains("class[1]") && m.contains("empty name"), "{m}");
        let m = e("[[class]]\nname = \"A\"\nsub = [\"\"]\n");
        assert!(m.contains("sub[1]") && m.contains("empty name"), "{m}");
        let m = e("[[class]]\nname = \"A/B\"\n");
        assert!(m.contains("contains '/'"), "{m}");
        let m = e(
            "[[class]]\nname = \"A\"\nsub = [{ name = \"a\", sub = [{ name = \"b\", sub = [\"c\"] }] }]\n",
        );
        assert!(m.contains("\"b\"") && m.contains("at most 3"), "{m}");
        let m = e("[[class]]\nname = \" A\"\n");
        assert!(m.contains("blanks"), "{m}");
        let m = e("[[class]]\nsub = [\"a\"]\n");
        assert!(m.contains("`name` is missing"), "{m}");
        let m = e("[[class]]\nname = \"A\"\nchildren = [\"a\"]\n");
        assert!(m.contains("unknown key `children`"), "{m}");
        let m = e("classes = []\n");
        assert!(m.contains("unknown key `classes`"), "{m}");
        let m = e("[[class]]\nname = \"A\"\nsub = [1]\n");
        assert!(m.contains("sub[1]") && m.contains("integer"), "{m}");
        let m = e("[[class]]\nname = \"A\"\nsub = \"a\"\n");
        assert!(m.contains("`sub` must be an array"), "{m}");
        let m = e("[[class\n");
        assert!(m.contains("categories:"), "{m}");
    }
}
