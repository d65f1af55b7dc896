"""Lists import cycles between the modules of each crate (`python3 tools/module_cycles.py`).

A module is a file (`mod.rs` stands for its folder); an import is a `crate::` or `super::` path
outside comments and test modules. Exits 1 when a crate has a cycle (CI runs it): data flows one
way inside a crate as it does between them (docs/architecture.md)."""
import re, os, sys, glob
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
found = False
def modname(crate_src, path):
    rel = os.path.relpath(path, crate_src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
    return '::'.join(parts)
for crate in ['data-prep', 'model', 'experiments', 'reports']:
    src = os.path.join(root, crate, 'src')
    files = [f for f in glob.glob(src + '/**/*.rs', recursive=True) if '/bin/' not in f]
    mods = {modname(src, f): f for f in files}
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        text = '\n'.join(l for l in open(f).read().split('\n') if not l.strip().startswith('//'))
        text = re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', text, flags=re.S)
        for path in re.findall(r'\bcrate::([a-z_0-9]+(?:::[a-z_0-9]+)*)', text):
            parts = path.split('::')
            for k in range(len(parts), 0, -1):
                cand = '::'.join(parts[:k])
                if cand in mods and cand != m and not m.startswith(cand + '::') and not cand == '':
                    graph[m].add(cand); break
        for base, group in re.findall(r'\b(crate|super)::\{([^;]*)\}', text):
            depth, item, items = 0, '', []
            for ch in group + ',':
                if ch == ',' and depth == 0:
                    items.append(item.strip()); item = ''; continue
                depth += (ch == '{') - (ch == '}')
                item += ch
            for it in items:
                head = re.match(r'[a-z_0-9]+', it)
                if not head: continue
                if base == 'crate':
                    cand = head.group(0)
                else:
                    parent = '::'.join(m.split('::')[:-1])
                    cand = (parent + '::' + head.group(0)) if parent else head.group(0)
                if cand in mods and cand != m and not m.startswith(cand + '::'):
                    graph[m].add(cand)
        for path in re.findall(r'\bsuper::([a-z_0-9]+(?:::[a-z_0-9]+)*)', text):
            parent = m.split('::')[:-1]
            parts = parent + path.split('::')
            for k in range(len(parts), len(parent), -1):
                cand = '::'.join(parts[:k])
                if cand in mods and cand != m:
                    graph[m].add(cand); break
    # strongly connected components (Tarjan)
    index, low, stack, on, comps, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: comps.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index: visit(v)
    for c in comps:
        found = True
        print(f"{crate}: cycle among {', '.join(c)}")
if found:
    sys.exit(1)
print("no import cycles between the modules of data-prep, model, experiments and reports")
