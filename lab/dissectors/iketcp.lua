-- IKE and ESP over TCP (RFC 9329, which obsoletes RFC 8229) for Wireshark/tshark 4.0, shipped with tcplab.
--
-- The TCP originator's stream starts with the 6-byte prefix "IKETCP" (§4); then, in both
-- directions, every message is framed by a 16-bit Length that counts itself (§3): an IKE
-- message behind the 4-byte Non-ESP Marker (zero), or an ESP packet (its SPI is never zero).
-- IKE messages go to Wireshark's own "isakmp" dissector and ESP packets to "esp", so the
-- IKEv2 decryption table and the ESP SAs (`python -m lab.ike.keylog RUN_DIR --options`)
-- decrypt them in place, straight from the TCP capture.
--
-- Streams are recognised by the prefix on any port that no other dissector claims (a
-- heuristic), and on the ports of the preference iketcp.tcp_ports (default 4500), where a
-- stream without the prefix goes to the port's usual dissector: -o iketcp.tcp_ports:4500,443
--
-- Display filter: iketcp. Fields: iketcp.prefix, iketcp.length, iketcp.non_esp_marker,
-- iketcp.type (1 IKE, 2 ESP), iketcp.spi.

local PREFIX = "IKETCP"
local PREFIX_LEN = 6
local LENGTH_LEN = 2
local MARKER_LEN = 4
local TYPES = { [1] = "IKE", [2] = "ESP" }

local iketcp = Proto("iketcp", "IKE and ESP over TCP (RFC 9329)")

local f = {
    prefix = ProtoField.string("iketcp.prefix", "Stream prefix"),
    length = ProtoField.uint16("iketcp.length", "Length", base.DEC),
    marker = ProtoField.uint32("iketcp.non_esp_marker", "Non-ESP Marker", base.HEX),
    type = ProtoField.uint8("iketcp.type", "Message", base.DEC, TYPES),
    spi = ProtoField.uint32("iketcp.spi", "ESP SPI", base.HEX),
}
iketcp.fields = { f.prefix, f.length, f.marker, f.type, f.spi }

local ef = {
    malformed = ProtoExpert.new("iketcp.malformed", "Malformed IKETCP frame", expert.group.MALFORMED,
        expert.severity.ERROR),
}
iketcp.experts = { ef.malformed }

iketcp.prefs.tcp_ports = Pref.range("TCP ports", "4500",
    "TCP ports whose streams are tried as IKETCP (a stream without the IKETCP prefix goes to the port's usual dissector)",
    65535)

local fx_stream = Field.new("tcp.stream")
local fx_seq = Field.new("tcp.seq")

local function last(field)
    local all = { field() }
    local fi = all[#all]
    return fi and fi.value
end

local isakmp = Dissector.get("isakmp")
local esp = Dissector.get("esp")

-- TCP streams that began with the prefix, by tcp.stream (both directions are IKETCP)
local streams = {}

local function starts_stream(tvb)
    return tvb:len() >= PREFIX_LEN and last(fx_seq) == 1 and tvb(0, PREFIX_LEN):string() == PREFIX
end

-- messages shown in the Info column of the frame being dissected (TCP may call us twice for one
-- segment: for the reassembled message that ends in it, then for the rest)
local info_frame, info_messages = nil, 0

-- Walk the prefix and whole frames; ask TCP for more bytes when a frame is cut.
local function dissect_stream(tvb, pinfo, tree)
    local len = tvb:len()
    local offset = 0
    local ike, esp_count = 0, 0
    local prefix = false
    pinfo.cols.protocol = "IKETCP"
    if starts_stream(tvb) then
        local t = tree:add(iketcp, tvb(0, PREFIX_LEN))
        t:add(f.prefix, tvb(0, PREFIX_LEN))
        t:set_text("IKETCP stream prefix")
        offset = PREFIX_LEN
        prefix = true
    end
    while offset < len do
        local remaining = len - offset
        if remaining < LENGTH_LEN then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
            break
        end
        local length = tvb(offset, LENGTH_LEN):uint()
        if length < LENGTH_LEN + 1 then
            local t = tree:add(iketcp, tvb(offset, remaining))
            t:add(f.length, tvb(offset, LENGTH_LEN))
                :add_proto_expert_info(ef.malformed, string.format("Length %d leaves no message", length))
            offset = len
            break
        end
        if remaining < length then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = length - remaining
            break
        end
        if info_frame == pinfo.number and info_messages > 0 then
            -- keep what the IKE or ESP dissector wrote for the previous message of this segment
            pinfo.cols.info:append(" | ")
            pinfo.cols.info:fence()
        end
        info_frame, info_messages = pinfo.number, (info_frame == pinfo.number and info_messages or 0) + 1
        local t = tree:add(iketcp, tvb(offset, length))
        t:add(f.length, tvb(offset, LENGTH_LEN))
        local body = offset + LENGTH_LEN
        local body_len = length - LENGTH_LEN
        if body_len >= MARKER_LEN and tvb(body, MARKER_LEN):uint() == 0 then
            t:add(f.marker, tvb(body, MARKER_LEN))
            t:add(f.type, tvb(body, 0), 1):set_generated()
            t:set_text(string.format("IKETCP frame: IKE message, %d bytes", body_len - MARKER_LEN))
            ike = ike + 1
            if body_len > MARKER_LEN then
                isakmp:call(tvb(body + MARKER_LEN, body_len - MARKER_LEN):tvb(), pinfo, tree)
            end
        elseif body_len >= MARKER_LEN then
            t:add(f.spi, tvb(body, MARKER_LEN))
            t:add(f.type, tvb(body, 0), 2):set_generated()
            t:set_text(string.format("IKETCP frame: ESP packet, %d bytes", body_len))
            esp_count = esp_count + 1
            esp:call(tvb(body, body_len):tvb(), pinfo, tree)
        else
            t:add_proto_expert_info(ef.malformed, string.format("a %d-byte message is neither IKE nor ESP", body_len))
        end
        offset = offset + length
    end
    if ike + esp_count == 0 and prefix then
        pinfo.cols.info = "IKETCP stream prefix"
    end
    return offset
end

local function heuristic(tvb, pinfo, tree)
    local stream = last(fx_stream)
    if stream == nil or tvb:len() == 0 then
        return false
    end
    if streams[stream] == nil then
        if not starts_stream(tvb) then
            return false
        end
        streams[stream] = true
    end
    dissect_stream(tvb, pinfo, tree)
    return true
end

local port_table = DissectorTable.get("tcp.port")
local registered = {} -- port -> the dissector the port had before (false: none)

-- on a configured port: an IKETCP stream is ours, any other stream goes to the port's usual dissector
function iketcp.dissector(tvb, pinfo, tree)
    if heuristic(tvb, pinfo, tree) then
        return tvb:len()
    end
    local previous = registered[pinfo.match_uint]
    if previous then
        return previous:call(tvb, pinfo, tree)
    end
    return 0
end

local function register_ports(range)
    for port, _ in pairs(registered) do
        if registered[port] then
            port_table:add(port, registered[port])
        else
            port_table:remove(port, iketcp)
        end
    end
    registered = {}
    for _, part in ipairs(range ~= nil and { range } or {}) do
        for item in string.gmatch(part, "[^,%s]+") do
            local lo, hi = string.match(item, "^(%d+)-(%d+)$")
            lo = tonumber(lo or item)
            hi = tonumber(hi or item)
            if lo ~= nil and hi ~= nil then
                for port = lo, hi do
                    registered[port] = port_table:get_dissector(port) or false
                    port_table:add(port, iketcp)
                end
            end
        end
    end
end

function iketcp.prefs_changed()
    register_ports(iketcp.prefs.tcp_ports)
end

function iketcp.init()
    streams = {}
end

register_ports("4500")
iketcp:register_heuristic("tcp", heuristic)
