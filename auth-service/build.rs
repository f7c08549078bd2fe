// `embed_migrations!` reads the migration folders at compile time, but
// cargo does not know that: without this, a new or edited migration is not
// embedded until something else changes (diesel_migrations' documented fix).
fn main() {
    println!("cargo:rerun-if-changed=../migrations-auth");
}
