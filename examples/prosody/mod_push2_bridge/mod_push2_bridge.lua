-- mod_push2_bridge: the Prosody side of push2 (Push 2.0, urn:xmpp:push2:0).
--
-- It owns only what needs Prosody's internals and forwards facts to push2d,
-- an external component (XEP-0114), over the bridge protocol
-- (docs/bridge-protocol.md, namespace urn:push2:bridge:1). All decisions live
-- in push2d.
--
--   * <enable/> and <disable/> from clients go to push2d as IQs; the client
--     gets push2d's real answer (result or the exact error).
--   * Stanza events (offline storage) go to push2d as messages; push2d acks
--     each one. Unacked events are kept (bounded) and replayed when push2d
--     comes back.
--   * push2d sends notifications through the bridge, which sends them from
--     this host to the push service and passes error replies back.
--   * The account's disco#info lists urn:xmpp:push2:0 and every profile
--     push2d holds, as push2d announces them.
--
-- Every hook is wrapped so that nothing here can throw into Prosody, and no
-- hook ever consumes an event: offline storage and delivery happen exactly as
-- without this module, whatever push2d does.

local st = require "util.stanza";
local jid = require "util.jid";
local id = require "util.id";
local new_cache = require "util.cache".new;

local xmlns_push2 = "urn:xmpp:push2:0";
local xmlns_bridge = "urn:push2:bridge:1";

local component = module:get_option_string("push2_component", "push2." .. module.host);
local iq_timeout = module:get_option_number("push2_iq_timeout", 10);
local max_pending = module:get_option_number("push2_max_pending_events", 10000);

-- The features push2d last announced. Until it announces any, the account
-- disco shows nothing of push2: advertising a service that cannot answer
-- would make clients register into a void.
local features = {};

-- Events sent and not yet acked by push2d, in order, bounded: the oldest is
-- dropped (and counted) when full.
local pending = new_cache(max_pending, function(event_id)
	module:log("warn", "push2 event buffer full (%d): dropping the oldest unacked event %s", max_pending, event_id);
end);

local function safely(name, f)
	return function(...)
		local ok, ret = xpcall(f, debug.traceback, ...);
		if not ok then
			module:log("error", "push2 bridge: %s failed: %s", name, ret);
			return nil;
		end
		return ret;
	end
end

local function component_connected()
	local h = prosody.hosts[component];
	local env = h and h.modules and h.modules.component;
	return env and env.connected or false;
end

-- The registration id of a session: the SASL2 client id when it has one,
-- else the resource (DESIGN.md "Delivery and state").
local function registration_id(session)
	return session.client_id or session.resource;
end

local function account_of(session)
	return session.username .. "@" .. session.host;
end

-- A stanza copy that keeps its meaning when embedded in our namespace.
local function embed(stanza)
	local copy = st.clone(stanza);
	copy.attr.xmlns = "jabber:client";
	return copy;
end

---------------------------------------------------------------------------
-- enable / disable

local function forward_iq(kind)
	return safely(kind, function(event)
		local origin, stanza = event.origin, event.stanza;
		local payload = stanza.tags[1];
		local reg_id = registration_id(origin);
		if not component_connected() then
			origin.send(st.error_reply(stanza, "wait", "service-unavailable", "the push service is temporarily unavailable"));
			return true;
		end
		local inner = st.clone(payload);
		inner.attr.xmlns = xmlns_push2;
		local req = st.iq({ type = "set", from = module.host, to = component, id = id.medium() })
			:tag(kind, { xmlns = xmlns_bridge, account = account_of(origin), registration = reg_id })
				:add_child(inner);
		module:send_iq(req, nil, iq_timeout):next(function()
			origin.send(st.reply(stanza));
		end, function(err)
			local e = err or {};
			origin.send(st.error_reply(stanza, e.type or "wait", e.condition or "internal-server-error", e.text));
		end);
		return true;
	end);
end

module:hook("iq-set/self/" .. xmlns_push2 .. ":enable", forward_iq("enable"));
module:hook("iq-set/self/" .. xmlns_push2 .. ":disable", forward_iq("disable"));

---------------------------------------------------------------------------
-- disco#info of the account

module:hook("account-disco-info", safely("disco", function(event)
	for _, var in ipairs(features) do
		event.reply:tag("feature", { var = var }):up();
	end
end));

---------------------------------------------------------------------------
-- events to push2d

local function send_event(event_id, ev)
	if component_connected() then
		module:send(ev);
	end
end

local function new_event(trigger, account, stanza, attrs)
	local event_id = id.medium();
	local a = { xmlns = xmlns_bridge, id = event_id, account = account, trigger = trigger };
	for k, v in pairs(attrs or {}) do a[k] = v; end
	local ev = st.message({ from = module.host, to = component, id = event_id })
		:tag("event", a);
	return event_id, ev;
end

local function archive_id_of(stanza, account)
	for tag in stanza:childtags("stanza-id", "urn:xmpp:sid:0") do
		if tag.attr.by == account then return tag.attr.id; end
	end
end

-- Offline storage: the account has no session that can take the message.
-- Runs before mod_offline (priority -1) and never returns a value, so
-- storage goes on as usual.
module:hook("message/offline/handle", safely("offline", function(event)
	local stanza = event.stanza;
	local to = stanza.attr.to;
	local node = event.username or jid.node(to);
	if not node then return; end
	local account = node .. "@" .. module.host;
	local event_id, ev = new_event("offline", account, stanza, { ["archive-id"] = archive_id_of(stanza, account) });
	ev:add_child(embed(stanza)):up();
	pending:set(event_id, ev);
	send_event(event_id, ev);
end), 10);

---------------------------------------------------------------------------
-- messages from push2d

local function from_push2d(stanza)
	return stanza.attr.from == component;
end

local function handle_push(push)
	local notification = push:get_child("message", "jabber:client") or push.tags[1];
	if not notification then return; end
	local out = st.clone(notification);
	out.attr.xmlns = nil;
	out.attr.from = module.host;
	module:send(out);
end

local function replay()
	local n = 0;
	for _, ev in pending:items() do
		module:send(ev);
		n = n + 1;
	end
	if n > 0 then
		module:log("info", "push2d is back: replayed %d unacked events", n);
	end
end

module:hook("message/host", safely("message", function(event)
	local stanza = event.stanza;
	if from_push2d(stanza) then
		for child in stanza:childtags(nil, xmlns_bridge) do
			if child.name == "push" then
				handle_push(child);
			elseif child.name == "ack" then
				pending:set(child.attr.id, nil);
			elseif child.name == "features" then
				local list = {};
				for f in child:childtags("feature") do
					table.insert(list, f.attr.var);
				end
				local was_empty = #features == 0;
				features = list;
				module:log("debug", "push2d features: %s", table.concat(list, " "));
				if was_empty then replay(); end
			end
		end
		return true;
	end
	-- An error reply from a push service to one of our notifications.
	if stanza.attr.type == "error" and (stanza.attr.id or ""):match("^push2%-") then
		local etype, condition, text = stanza:get_error();
		module:send(st.message({ from = module.host, to = component, id = id.medium() })
			:tag("delivery-error", { xmlns = xmlns_bridge, id = stanza.attr.id, from = stanza.attr.from,
				type = etype, condition = condition }):text(text or ""));
		return true;
	end
end), 10);

-- push2d connected (again): replay what it has not acknowledged. It also
-- announces its features on connect, which triggers the same replay if this
-- hook is not available.
module:context(component):hook("component-authenticated", safely("reconnect", function()
	module:add_timer(0.5, safely("replay", replay));
end));

module:log("info", "push2 bridge loaded: component %s, up to %d buffered events", component, max_pending);
