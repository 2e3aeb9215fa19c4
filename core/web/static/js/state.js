// What a stack's state is, in one word, from GET /api/stacks and the live events.

export function stackState(stack, live) {
  const rec = stack.recorded || {};
  if (live && live.deploying) return "deploying";
  if (rec.status === "running" || rec.status === "pending") return "deploying";
  if (rec.status === "failed" || rec.status === "interrupted") return "failed";
  const engine = (stack.engine || {}).state;
  if (rec.status === "healthy" && (engine === "unhealthy" || engine === "missing")) return "drifted";
  if (live && live.drifted) return "drifted";
  // The image update check's answer, where the core has it (`images`, issue 14).
  if (stack.update_available || (stack.images && stack.images.update_available)) return "update";
  if (stack.converged) return "converged";
  return "changed";
}

export const STATE_TEXT = {
  deploying: "deploying",
  failed: "failed",
  drifted: "drifted",
  update: "update available",
  converged: "converged",
  changed: "not converged",
};
