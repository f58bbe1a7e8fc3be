//! One `iptables-restore --noflush` transaction: the input text, built table
//! by table in the order iptables needs (chains declared before rules use
//! them, rules deleted before the chains they jump to).

use std::fmt::Write as _;

use super::render::Table;

/// The edits of one table.
#[derive(Debug, Default)]
struct TableEdit {
    /// `:NAME - [0:0]` lines: creates the chain, or flushes it if it exists.
    declarations: String,
    /// `-A` lines filling the declared chains.
    rules: String,
    /// `-D` lines against chains that are not rewritten.
    deletions: String,
    /// `-I`/`-A` lines against chains that are not rewritten.
    additions: String,
    /// `-X` lines removing chains nothing refers to any more.
    removals: String,
    lines: usize,
}

impl TableEdit {
    fn is_empty(&self) -> bool {
        self.lines == 0
    }

    fn write_to(&self, name: &str, out: &mut String) {
        if self.is_empty() {
            return;
        }
        let _ = writeln!(out, "*{name}");
        out.push_str(&self.declarations);
        out.push_str(&self.rules);
        out.push_str(&self.deletions);
        out.push_str(&self.additions);
        out.push_str(&self.removals);
        out.push_str("COMMIT\n");
    }
}

/// A transaction over the filter, nat and mangle tables.
#[derive(Debug, Default)]
pub struct Transaction {
    filter: TableEdit,
    nat: TableEdit,
    mangle: TableEdit,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    fn table(&mut self, table: Table) -> &mut TableEdit {
        match table {
            Table::Filter => &mut self.filter,
            Table::Nat => &mut self.nat,
        }
    }

    /// Creates or flushes `chain` and fills it with `rules` (`-A` lines).
    pub fn write_chain(&mut self, table: Table, chain: &str, rules: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.declarations, ":{chain} - [0:0]");
        edit.rules.push_str(rules);
        edit.lines += 1 + rules.lines().count();
    }

    /// Appends one rule to a chain declared in this transaction.
    pub fn push_rule(&mut self, table: Table, chain: &str, spec: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.rules, "-A {chain} {spec}");
        edit.lines += 1;
    }

    /// Flushes and removes `chain`.
    pub fn remove_chain(&mut self, table: Table, chain: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.declarations, ":{chain} - [0:0]");
        let _ = writeln!(edit.removals, "-X {chain}");
        edit.lines += 2;
    }

    /// Deletes the rule `spec` from a chain that is not rewritten.
    pub fn delete_rule(&mut self, table: Table, chain: &str, spec: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.deletions, "-D {chain} {spec}");
        edit.lines += 1;
    }

    /// Inserts `spec` at the head of a chain that is not rewritten.
    pub fn insert_rule(&mut self, table: Table, chain: &str, spec: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.additions, "-I {chain} 1 {spec}");
        edit.lines += 1;
    }

    /// Appends `spec` to a chain that is not rewritten.
    pub fn append_rule(&mut self, table: Table, chain: &str, spec: &str) {
        let edit = self.table(table);
        let _ = writeln!(edit.additions, "-A {chain} {spec}");
        edit.lines += 1;
    }

    /// Creates (or flushes) an empty chain in the mangle table.
    pub fn mangle_chain(&mut self, chain: &str) {
        let _ = writeln!(self.mangle.declarations, ":{chain} - [0:0]");
        self.mangle.lines += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.nat.is_empty() && self.mangle.is_empty()
    }

    /// Lines of restore input, not counting table headers and COMMITs.
    pub fn lines(&self) -> usize {
        self.filter.lines + self.nat.lines + self.mangle.lines
    }

    /// The `iptables-restore` input.
    pub fn to_restore_input(&self) -> String {
        let mut out = String::with_capacity(
            self.filter.rules.len() + self.nat.rules.len() + self.nat.declarations.len() + 256,
        );
        self.filter.write_to("filter", &mut out);
        self.nat.write_to("nat", &mut out);
        self.mangle.write_to("mangle", &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_each_table_for_iptables() {
        let mut tx = Transaction::new();
        assert!(tx.is_empty());
        tx.remove_chain(Table::Nat, "KUBE-SEP-OLD");
        tx.insert_rule(Table::Nat, "KUBE-SERVICES", "-d 10.96.0.1 -j KUBE-SVC-NEW");
        tx.delete_rule(Table::Nat, "KUBE-SERVICES", "-d 10.96.0.2 -j KUBE-SVC-OLD");
        tx.write_chain(
            Table::Nat,
            "KUBE-SVC-NEW",
            "-A KUBE-SVC-NEW -j KUBE-SEP-NEW\n",
        );
        tx.append_rule(Table::Filter, "KUBE-SERVICES", "-d 10.96.0.3 -j REJECT");
        assert_eq!(
            tx.to_restore_input(),
            "*filter\n\
             -A KUBE-SERVICES -d 10.96.0.3 -j REJECT\n\
             COMMIT\n\
             *nat\n\
             :KUBE-SEP-OLD - [0:0]\n\
             :KUBE-SVC-NEW - [0:0]\n\
             -A KUBE-SVC-NEW -j KUBE-SEP-NEW\n\
             -D KUBE-SERVICES -d 10.96.0.2 -j KUBE-SVC-OLD\n\
             -I KUBE-SERVICES 1 -d 10.96.0.1 -j KUBE-SVC-NEW\n\
             -X KUBE-SEP-OLD\n\
             COMMIT\n"
        );
        assert_eq!(tx.lines(), 7);
    }
}
