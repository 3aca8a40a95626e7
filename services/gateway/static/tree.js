// GET /me/tree as nodes the page draws: {id, request, status, parentId, fromStep, steps[], children[]}.
//
// The gateway answers {"chains": [...]} (or a bare list) of chains, each with its steps and scores;
// branches come either nested under their parent (`branches` / `children`) or flat with a
// `parent_chain_id`, and are put under their parent here either way.

export function normaliseTree(raw) {
  const list = Array.isArray(raw) ? raw : raw?.chains ?? raw?.roots ?? raw?.trees ?? [];
  const byId = new Map();
  const roots = [];
  const visit = (item, parent) => {
    const node = chainNode(item);
    if (!node.id || byId.has(node.id)) return;
    byId.set(node.id, node);
    if (parent) {
      node.parentId ??= parent.id;
      parent.children.push(node);
    }
    for (const child of item.branches ?? item.children ?? []) visit(child, node);
  };
  const flat = [];
  for (const item of list) {
    if (item && typeof item === "object") {
      const before = byId.size;
      visit(item, null);
      if (byId.size > before) flat.push(byId.get(String(item.chain_id ?? item.id)));
    }
  }
  for (const node of flat) {
    const parent = node.parentId ? byId.get(node.parentId) : null;
    if (parent && parent !== node && !parent.children.includes(node)) parent.children.push(node);
    else if (!parent) roots.push(node);
  }
  return roots;
}

function chainNode(item) {
  const steps = (item.steps ?? []).map((step, i) => ({
    index: Number(step.step ?? step.index ?? i),
    kind: step.kind ?? null,
    score: typeof step.score === "number" ? step.score : null,
    threshold: typeof (step.threshold ?? item.threshold) === "number" ? step.threshold ?? item.threshold : null,
    sha256: step.sha256 ?? step.image?.sha256 ?? null,
  }));
  return {
    id: item.chain_id != null || item.id != null ? String(item.chain_id ?? item.id) : null,
    request: item.request ?? item.request_text ?? null,
    status: item.status ?? null,
    parentId: item.parent_chain_id != null ? String(item.parent_chain_id) : null,
    fromStep: item.branch_from_step ?? item.from_step ?? null,
    steps,
    children: [],
  };
}

// The node of chain `id` anywhere in `nodes` (roots and their branches), or null.
export function findNode(nodes, id) {
  for (const node of nodes) {
    if (node.id === id) return node;
    const found = findNode(node.children, id);
    if (found) return found;
  }
  return null;
}
