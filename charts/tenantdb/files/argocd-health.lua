-- Argo CD health for TenantDatabase, PostgresServer and IpWhitelist, from their kstatus conditions.
-- Stalled=True is Degraded (it needs a change by someone), Ready=True is Healthy, anything else is
-- Progressing, and so is a status older than the spec (observedGeneration behind generation).
local hs = { status = "Progressing", message = "waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "waiting for the operator to look at the latest spec"
  return hs
end
local ready, stalled, reconciling
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c
  elseif c.type == "Stalled" then stalled = c
  elseif c.type == "Reconciling" then reconciling = c end
end
local function say(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.message = say(reconciling)
elseif ready ~= nil then
  hs.message = say(ready)
end
return hs
