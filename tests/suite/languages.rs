//! Issue 12, "Every language": notes in Chinese, Japanese, German and Spanish (and English) are
//! found in lexical mode by their own words, inflected forms included, through the library.

use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::retrieve::Mode;
use std::path::{Path, PathBuf};

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("ponder-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NOTES: &[(&str, &str)] = &[
    (
        "hongshaorou.md",
        "# 红烧肉\n\n红烧肉的做法：先把五花肉切成小块，用冷水焯一下，然后加冰糖炒出糖色，\
         再放酱油和八角，小火慢炖一个小时。\n",
    ),
    (
        "kyoto-momiji.md",
        "# 京都の紅葉\n\n京都の紅葉は十一月が見頃です。嵐山や東福寺には多くの観光客が訪れ、\
         夜にはライトアップも楽しめます。\n",
    ),
    (
        "sauerteig.md",
        "# Sauerteigbrot backen\n\nDen Sauerteig am Vorabend ansetzen und über Nacht gehen lassen. Am nächsten \
         Morgen das Mehl, das Wasser und das Salz zum Teig geben, kräftig kneten und den Laib in einem heißen \
         Ofen backen, bis die Kruste dunkelbraun ist.\n",
    ),
    (
        "fahrrad.md",
        "# Werkstatt\n\nDas Fahrrad braucht neue Bremsen. Die Kette ist verrostet und die Reifen haben zu wenig \
         Luft. Ich bringe es am Samstag in die Werkstatt und hole es am Montag wieder ab.\n",
    ),
    (
        "tortilla.md",
        "# Tortilla española\n\nPelar las patatas, cortarlas en láminas finas y freírlas despacio en abundante \
         aceite de oliva. Batir los huevos, mezclar con las patatas y cuajar la tortilla por ambos lados en una \
         sartén grande.\n",
    ),
    (
        "viaje.md",
        "# Viaje a Granada\n\nEl tren sale de la estación a las ocho de la mañana. Queremos visitar la Alhambra \
         por la tarde y cenar en un restaurante del Albaicín con vistas a la ciudad.\n",
    ),
    (
        "sourdough.md",
        "# Sourdough bread\n\nFeed the starter in the evening and let it rise overnight. In the morning mix the \
         flour, water and salt into the dough, knead it well and bake the loaf in a hot oven until the crust is \
         dark brown.\n",
    ),
    (
        "garden.md",
        "# Garden\n\nThe tomatoes need water every morning. The roses were pruned in March and the apple trees \
         are flowering early this year.\n",
    ),
];

#[test]
fn lexical_search_finds_notes_in_their_own_language() {
    let t = Scratch::new("languages");
    let docs = t.path().join("notes");
    std::fs::create_dir_all(&docs).unwrap();
    for (name, text) in NOTES {
        std::fs::write(docs.join(name), text).unwrap();
    }
    let index = t.path().join("index");
    let engine =
        Engine::open(&index, EngineOptions { device: ponder::device::DeviceChoice::Cpu, ..Default::default() }).unwrap();
    let report = engine.index(&[docs], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!(report.files_indexed, NOTES.len(), "{report:?}");

    let cases = [
        // Chinese and Japanese: words as written, matched as character bigrams.
        ("五花肉", "hongshaorou.md"),
        ("冰糖 酱油", "hongshaorou.md"),
        ("紅葉", "kyoto-momiji.md"),
        ("嵐山のライトアップ", "kyoto-momiji.md"),
        // German: plurals and inflections of words that occur in the note only in another form.
        ("Sauerteigbrot backen", "sauerteig.md"),
        ("Krusten", "sauerteig.md"),
        ("Fahrräder", "fahrrad.md"),
        ("verrosteten Ketten", "fahrrad.md"),
        // Spanish: plurals for singulars, and accents left out.
        ("tortillas", "tortilla.md"),
        ("sartenes", "tortilla.md"),
        ("estacion de trenes", "viaje.md"),
        // English as before.
        ("crust of the loaf", "sourdough.md"),
        ("tomato", "garden.md"),
    ];
    for (query, want) in cases {
        let hits = engine.search(&SearchRequest { k: 3, mode: Mode::Lexical, ..SearchRequest::new(query) }).unwrap();
        let got: Vec<&str> = hits.iter().map(|h| h.path.rsplit('/').next().unwrap()).collect();
        assert_eq!(got.first(), Some(&want), "{query:?} -> {got:?}");
        assert!(!hits[0].highlights.is_empty(), "{query:?}: no highlight");
    }

    // Highlights cover the matching CJK run and the accented word.
    let hits = engine.search(&SearchRequest { k: 1, mode: Mode::Lexical, ..SearchRequest::new("五花肉") }).unwrap();
    let h = &hits[0];
    assert!(h.highlights.iter().any(|&(s, e)| &h.text[s..e] == "五花肉"), "{:?}", h.highlights);
    let hits = engine.search(&SearchRequest { k: 1, mode: Mode::Lexical, ..SearchRequest::new("sarten") }).unwrap();
    let h = &hits[0];
    assert!(h.highlights.iter().any(|&(s, e)| &h.text[s..e] == "sartén"), "{:?}", h.highlights);
}
