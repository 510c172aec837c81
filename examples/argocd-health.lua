-- Argo CD health check for kiu.dev/ProjectVersion (docs/gitops.md).
-- Install it as resource.customizations.health.kiu.dev_ProjectVersion in argocd-cm
-- (examples/gitops/argocd-cm.yaml).
--
--   Healthy      Ready=True: the units serve (RUNNING), or the version idles at zero units
--   Progressing  no status yet, the spec not yet observed, STARTING, STOPPING, resizing
--   Degraded     FAILED, or Stalled (the spec cannot be met as written)
--   Suspended    stopped on purpose (spec.state: Stopped and STOPPED)
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function units()
  local s = obj.status
  return tostring(s.inServiceInferenceUnits or 0) .. "/" .. tostring(s.desiredInferenceUnits or 0)
    .. " units in service"
end

if obj.status == nil or obj.status.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kiu operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the kiu operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.status
local message = obj.status.statusMessage or ""
local ready = condition("Ready")
local degraded = condition("Degraded")

if phase == "FAILED" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end

if phase == "STOPPED" then
  hs.status = "Suspended"
  hs.message = "Stopped: " .. units()
  return hs
end

-- Stuck (kstatus's Stalled): the spec cannot be met as written, even if units serve.
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or message
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = phase .. ": " .. units()
  if degraded ~= nil and degraded.status == "True" then
    hs.message = hs.message .. " (reduced capacity: " .. (degraded.reason or "") .. ")"
  end
  return hs
end

hs.status = "Progressing"
hs.message = phase .. ": " .. units()
if message ~= "" then
  hs.message = hs.message .. ": " .. message
end
return hs
