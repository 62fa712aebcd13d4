-- TCP-ENO (RFC 8547) for Wireshark/tshark 4.0: a TCP option dissector, shipped with tcplab.
--
-- Decodes the option kind 69 and the pre-RFC experimental encoding (kind 253
-- with ExID 0x454E, RFC 6994; RFC 8547 §11), in its SYN form (a global
-- suboption with the b and a bits, TEP identifiers with and without data, length
-- bytes, RFC 8547 §4.1-4.4) and its non-SYN form (§4.1). When both SYNs of a
-- connection carry ENO, the second one also shows the roles and the negotiated
-- TEP (§4.5: the last TEP in host B's SYN that host A also offered), which the
-- tcpcrypt dissector (tcpcrypt.lua) reads to decode the stream.
--
-- Display filter: eno. Fields: eno.kind, eno.length, eno.exid, eno.syn_form,
-- eno.global, eno.b, eno.a, eno.z, eno.length_byte, eno.data_len, eno.tep,
-- eno.v, eno.tep_data, eno.contents, eno.role, eno.negotiated_tep, eno.outcome.
--
-- Use: tshark -X lua_script:eno.lua -r capture.pcap -Y eno   (or see `tcplab dissectors`)

local ENO_KIND = 69
local EXPERIMENTAL_KIND = 253
local ENO_EXID = 0x454E
local V_BIT = 0x80
local GLT_MASK = 0x7F
local TEP_ID_MIN = 0x20

-- RFC 8547 §11 Table 3, RFC 8548 §7 Table 4
local TEP_NAMES = {
    [0x20] = "Experimental use",
    [0x21] = "TCPCRYPT_ECDHE_P256",
    [0x22] = "TCPCRYPT_ECDHE_P521",
    [0x23] = "TCPCRYPT_ECDHE_Curve25519",
    [0x24] = "TCPCRYPT_ECDHE_Curve448",
}

local eno = Proto("eno", "TCP Encryption Negotiation Option (TCP-ENO, RFC 8547)")

local f = {
    kind = ProtoField.uint8("eno.kind", "Kind", base.DEC),
    length = ProtoField.uint8("eno.length", "Length", base.DEC),
    exid = ProtoField.uint16("eno.exid", "ExID", base.HEX),
    syn_form = ProtoField.bool("eno.syn_form", "SYN form"),
    global = ProtoField.uint8("eno.global", "Global suboption", base.HEX),
    z = ProtoField.uint8("eno.z", "Reserved (z1 z2 z3)", base.DEC, nil, 0x1C),
    a = ProtoField.bool("eno.a", "Application-aware (a)", 8, nil, 0x02),
    b = ProtoField.bool("eno.b", "Passive role (b)", 8, nil, 0x01),
    length_byte = ProtoField.uint8("eno.length_byte", "Length byte", base.HEX),
    data_len = ProtoField.uint8("eno.data_len", "TEP data length", base.DEC),
    suboption = ProtoField.uint8("eno.suboption", "TEP suboption", base.HEX),
    v = ProtoField.bool("eno.v", "Variable length (v)", 8, nil, V_BIT),
    tep = ProtoField.uint8("eno.tep", "TEP", base.HEX, TEP_NAMES, GLT_MASK),
    tep_data = ProtoField.bytes("eno.tep_data", "TEP data"),
    contents = ProtoField.bytes("eno.contents", "Contents"),
    role = ProtoField.string("eno.role", "Sender's role"),
    negotiated_tep = ProtoField.uint8("eno.negotiated_tep", "Negotiated TEP", base.HEX, TEP_NAMES),
    outcome = ProtoField.string("eno.outcome", "Negotiation"),
}
eno.fields = {
    f.kind, f.length, f.exid, f.syn_form, f.global, f.z, f.a, f.b, f.length_byte, f.data_len,
    f.suboption, f.v, f.tep, f.tep_data, f.contents, f.role, f.negotiated_tep, f.outcome,
}

local ef = {
    malformed = ProtoExpert.new("eno.malformed", "Malformed ENO option", expert.group.MALFORMED, expert.severity.ERROR),
    nonempty = ProtoExpert.new("eno.nonsyn_contents", "Non-SYN ENO option with contents (ENO ignores them)",
        expert.group.PROTOCOL, expert.severity.NOTE),
    failed = ProtoExpert.new("eno.failed", "TCP-ENO negotiation failed: plain TCP", expert.group.SEQUENCE,
        expert.severity.NOTE),
    negotiated = ProtoExpert.new("eno.negotiated", "TCP-ENO negotiated a TEP", expert.group.SEQUENCE,
        expert.severity.CHAT),
}
eno.experts = { ef.malformed, ef.nonempty, ef.failed, ef.negotiated }

local fx_syn = Field.new("tcp.flags.syn")
local fx_ack = Field.new("tcp.flags.ack")
local fx_stream = Field.new("tcp.stream")
local fx_srcport = Field.new("tcp.srcport")

-- the innermost value of a field (an ESP-decrypted inner TCP header comes after the outer one)
local function last(field)
    local all = { field() }
    local fi = all[#all]
    return fi and fi.value
end

local function tep_name(id)
    return TEP_NAMES[id] or string.format("TEP 0x%02x", id)
end

-- Negotiation state, per TCP stream: the SYN-form options seen, keyed by sender and frame
-- number (so dissecting a frame again, as Wireshark does, changes nothing).
local connections = {}

local function sender_key(pinfo)
    return tostring(pinfo.src) .. ":" .. tostring(last(fx_srcport))
end

-- RFC 8547 §4.3, §4.5: roles from the b bits (equal bits: ENO fails), the negotiated TEP is the
-- last TEP in B's SYN that A also offered. Returns a table or nil while one SYN is missing.
local function negotiate(conn)
    local a, b
    local senders = {}
    for key, syn in pairs(conn.syns) do
        senders[#senders + 1] = syn
    end
    if #senders < 2 then
        return nil
    end
    table.sort(senders, function(x, y) return x.frame < y.frame end)
    local first, second = senders[1], senders[2]
    if first.b == second.b then
        return { ok = false, reason = "both SYNs carry b = " .. (first.b and "1" or "0") .. " (role conflict)" }
    end
    if first.b then
        a, b = second, first
    else
        a, b = first, second
    end
    local offered = {}
    for _, t in ipairs(a.teps) do
        offered[t.id] = true
    end
    for i = #b.teps, 1, -1 do
        local t = b.teps[i]
        if offered[t.id] then
            local resumed = false
            for _, at in ipairs(a.teps) do
                if at.id == t.id and at.v and #at.data > 0 and t.v and #t.data > 0 then
                    resumed = true
                end
            end
            return { ok = true, tep = t.id, a = a.sender, b = b.sender, resumed = resumed }
        end
    end
    return { ok = false, reason = "no TEP in role B's SYN was offered by role A" }
end

-- What the tcpcrypt dissector asks: the negotiated TEP of a stream and the roles (nil: none).
-- Scripts do not share globals; package.loaded is shared, whatever order they load in.
local tcplab_eno = {}
package.loaded.tcplab_eno = tcplab_eno
function tcplab_eno.agreement(stream)
    local conn = connections[stream]
    if conn == nil then
        return nil
    end
    local result = negotiate(conn)
    if result and result.ok then
        return result
    end
    return nil
end
function tcplab_eno.sender_key(pinfo)
    return sender_key(pinfo)
end

-- Suboptions of a SYN-form option (RFC 8547 §4.1-4.4). Returns the TEPs and the global
-- suboption's b bit; adds an expert item and stops at a malformed suboption.
local function dissect_suboptions(tvb, offset, tree, pinfo)
    local teps = {}
    local global_seen = false
    local b_bit = false
    local len = tvb:len()
    while offset < len do
        local first = tvb(offset, 1):uint()
        local glt = bit.band(first, GLT_MASK)
        if bit.band(first, V_BIT) == 0 and glt < TEP_ID_MIN then
            local st = tree:add(f.global, tvb(offset, 1))
            st:add(f.z, tvb(offset, 1))
            st:add(f.a, tvb(offset, 1))
            st:add(f.b, tvb(offset, 1))
            local b = bit.band(first, 0x01) ~= 0
            local a = bit.band(first, 0x02) ~= 0
            st:append_text(string.format(" (b=%d a=%d)", b and 1 or 0, a and 1 or 0))
            if not global_seen then -- §4.2: only the first global suboption counts
                b_bit = b
                global_seen = true
            else
                st:append_text(" [ignored: not the first global suboption]")
            end
            offset = offset + 1
        elseif bit.band(first, V_BIT) == 0 then
            local st = tree:add(f.suboption, tvb(offset, 1), first)
            st:set_text("TEP " .. tep_name(glt))
            st:add(f.v, tvb(offset, 1))
            st:add(f.tep, tvb(offset, 1))
            teps[#teps + 1] = { id = glt, v = false, data = "" }
            offset = offset + 1
        elseif glt >= TEP_ID_MIN then
            -- v = 1 without a length byte: the data runs to the end of the option (§4.4)
            local data_len = len - offset - 1
            local st = tree:add(f.suboption, tvb(offset, len - offset), first)
            st:set_text(string.format("TEP %s with %d data bytes", tep_name(glt), data_len))
            st:add(f.v, tvb(offset, 1))
            st:add(f.tep, tvb(offset, 1))
            local data = ""
            if data_len > 0 then
                st:add(f.tep_data, tvb(offset + 1, data_len))
                data = tvb(offset + 1, data_len):bytes():tohex()
            end
            teps[#teps + 1] = { id = glt, v = true, data = data }
            offset = len
        else
            -- a length byte 100nnnnn: the next suboption is a v = 1 TEP with nnnnn + 1 data bytes (§4.4)
            local data_len = bit.band(first, 0x1F) + 1
            if len - offset < 2 + data_len then
                local it = tree:add(f.length_byte, tvb(offset, 1))
                it:add_proto_expert_info(ef.malformed, string.format(
                    "length byte announces %d data bytes, the option has %d left", data_len, len - offset - 2))
                return teps, b_bit, false
            end
            local tep = tvb(offset + 1, 1):uint()
            if tep < bit.bor(V_BIT, TEP_ID_MIN) then
                local it = tree:add(f.length_byte, tvb(offset, 1))
                it:add_proto_expert_info(ef.malformed, string.format(
                    "length byte followed by 0x%02x, not a TEP identifier with v = 1", tep))
                return teps, b_bit, false
            end
            local id = bit.band(tep, GLT_MASK)
            local st = tree:add(f.suboption, tvb(offset, 2 + data_len), tep)
            st:set_text(string.format("TEP %s with %d data bytes (length byte)", tep_name(id), data_len))
            st:add(f.length_byte, tvb(offset, 1))
            st:add(f.data_len, tvb(offset, 1), data_len)
            st:add(f.v, tvb(offset + 1, 1))
            st:add(f.tep, tvb(offset + 1, 1))
            st:add(f.tep_data, tvb(offset + 2, data_len))
            teps[#teps + 1] = { id = id, v = true, data = tvb(offset + 2, data_len):bytes():tohex() }
            offset = offset + 2 + data_len
        end
    end
    return teps, b_bit, true
end

local experimental_dissector -- what handled kind 253 before us (the built-in "Experimental")

function eno.dissector(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 2 then
        return 0
    end
    local kind = tvb(0, 1):uint()
    if kind == EXPERIMENTAL_KIND and (len < 4 or tvb(2, 2):uint() ~= ENO_EXID) then
        -- another experiment's option. TCP Fast Open (ExID 0xF989) needs the TCP header, which a
        -- Lua dissector cannot hand on, so it gets a plain line here.
        if experimental_dissector ~= nil and (len < 4 or tvb(2, 2):uint() ~= 0xF989) then
            return experimental_dissector:call(tvb, pinfo, tree)
        end
        local t = tree:add(tvb(), string.format("TCP Option - Experimental (kind 253, %d bytes)", len))
        return len
    end
    local experimental = kind == EXPERIMENTAL_KIND
    local syn = last(fx_syn)
    local t = tree:add(eno, tvb())
    t:add(f.kind, tvb(0, 1))
    t:add(f.length, tvb(1, 1))
    local offset = 2
    if experimental then
        t:add(f.exid, tvb(2, 2))
        offset = 4
    end
    t:add(f.syn_form, tvb(0, 0), syn and true or false):set_generated()
    local encoding = experimental and "experimental 253/0x454E" or "kind 69"
    if not syn then
        t:set_text(string.format("TCP Option - TCP-ENO, non-SYN form (%s)", encoding))
        if len > offset then
            t:add(f.contents, tvb(offset, len - offset)):add_proto_expert_info(ef.nonempty)
        end
        return len
    end
    local teps, b_bit, ok = dissect_suboptions(tvb, offset, t, pinfo)
    local names = {}
    for _, tep in ipairs(teps) do
        names[#names + 1] = tep_name(tep.id)
    end
    t:set_text(string.format("TCP Option - TCP-ENO, SYN form (%s): b=%d, TEPs %s", encoding, b_bit and 1 or 0,
        #names > 0 and table.concat(names, ", ") or "none"))
    if not ok then
        return len
    end
    local stream = last(fx_stream)
    if stream == nil then
        return len
    end
    local conn = connections[stream]
    if conn == nil then
        conn = { syns = {} }
        connections[stream] = conn
    end
    local key = sender_key(pinfo)
    local known = conn.syns[key]
    if known == nil or known.frame <= pinfo.number then -- a retransmitted SYN replaces the earlier one
        conn.syns[key] = { frame = pinfo.number, b = b_bit, teps = teps, sender = key, ack = last(fx_ack) }
    end
    local result = negotiate(conn)
    if result ~= nil then
        local later = true
        for _, other in pairs(conn.syns) do
            if other.frame > pinfo.number then
                later = false
            end
        end
        if later then -- the second SYN of the pair says how the negotiation ended
            if result.ok then
                t:add(f.role, tvb(0, 0), key == result.b and "B" or "A"):set_generated()
                local it = t:add(f.negotiated_tep, tvb(0, 0), result.tep):set_generated()
                t:add(f.outcome, tvb(0, 0), result.resumed and "resumed" or "negotiated"):set_generated()
                it:add_proto_expert_info(ef.negotiated, "TCP-ENO negotiated " .. tep_name(result.tep))
                t:append_text(" -> " .. tep_name(result.tep))
            else
                t:add(f.role, tvb(0, 0), b_bit and "B" or "A"):set_generated()
                t:add(f.outcome, tvb(0, 0), "failed: " .. result.reason):set_generated()
                    :add_proto_expert_info(ef.failed, "TCP-ENO failed: " .. result.reason)
            end
        else
            t:add(f.role, tvb(0, 0), b_bit and "B" or "A"):set_generated()
        end
    else
        t:add(f.role, tvb(0, 0), b_bit and "B" or "A"):set_generated()
    end
    return len
end

function eno.init()
    connections = {}
end

local options = DissectorTable.get("tcp.option")
experimental_dissector = options:get_dissector(EXPERIMENTAL_KIND)
options:add(ENO_KIND, eno)
options:add(EXPERIMENTAL_KIND, eno)
