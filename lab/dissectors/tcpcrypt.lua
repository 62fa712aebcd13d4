-- tcpcrypt (RFC 8548) for Wireshark/tshark 4.0: the key exchange and the frame layer, shipped with tcplab.
--
-- Needs eno.lua: a TCP connection is tcpcrypt only once TCP-ENO negotiated one of the
-- tcpcrypt TEPs (0x21-0x24) in its SYNs. Its reassembled byte stream then starts with
-- Init1 (role A) or Init2 (role B) (RFC 8548 §4.1): magic, message_len, the cipher list or
-- the chosen cipher, the nonce, the public key (P-256/P-521 behind a pubkey_len), ignored
-- bytes; every later byte is a frame (§4.2): control (rekey bit), clen, ciphertext whose
-- last 16 bytes are the AEAD tag. A resumed session (§3.5) has no Init messages.
--
-- Display filter: tcpcrypt. Fields: tcpcrypt.type, tcpcrypt.magic, tcpcrypt.message_len,
-- tcpcrypt.nciphers, tcpcrypt.sym_cipher, tcpcrypt.n_a, tcpcrypt.n_b, tcpcrypt.pubkey_len,
-- tcpcrypt.pub_a, tcpcrypt.pub_b, tcpcrypt.ignored, tcpcrypt.control, tcpcrypt.rekey,
-- tcpcrypt.cres, tcpcrypt.clen, tcpcrypt.ciphertext, tcpcrypt.tag, tcpcrypt.tep, tcpcrypt.role.
--
-- A port that another dissector claims first (80, 443...) needs -o tcp.try_heuristic_first:TRUE.

local INIT1_MAGIC = 0x15101A0E
local INIT2_MAGIC = 0x097105E0
local N_LEN = 32
local TAG_LEN = 16
local FRAME_HEADER_LEN = 3
local INIT1_FIXED_LEN = 9
local INIT2_FIXED_LEN = 10

-- RFC 8548 §5: public key sizes on the wire; P-256/P-521 are compressed points behind pubkey_len
local TEPS = {
    [0x21] = { name = "TCPCRYPT_ECDHE_P256", point = 33, prefixed = true },
    [0x22] = { name = "TCPCRYPT_ECDHE_P521", point = 67, prefixed = true },
    [0x23] = { name = "TCPCRYPT_ECDHE_Curve25519", point = 32, prefixed = false },
    [0x24] = { name = "TCPCRYPT_ECDHE_Curve448", point = 56, prefixed = false },
}
local TEP_NAMES = {}
for id, t in pairs(TEPS) do
    TEP_NAMES[id] = t.name
end

-- RFC 8548 §7 Table 5
local AEAD_NAMES = {
    [0x0001] = "AEAD_AES_128_GCM",
    [0x0002] = "AEAD_AES_256_GCM",
    [0x0010] = "AEAD_CHACHA20_POLY1305",
}
local TYPES = { [1] = "Init1", [2] = "Init2", [3] = "Frame" }
local MAGICS = { [INIT1_MAGIC] = "INIT1_MAGIC", [INIT2_MAGIC] = "INIT2_MAGIC" }

local tcpcrypt = Proto("tcpcrypt", "tcpcrypt (RFC 8548)")

local f = {
    type = ProtoField.uint8("tcpcrypt.type", "Message", base.DEC, TYPES),
    magic = ProtoField.uint32("tcpcrypt.magic", "Magic", base.HEX, MAGICS),
    message_len = ProtoField.uint32("tcpcrypt.message_len", "message_len", base.DEC),
    nciphers = ProtoField.uint8("tcpcrypt.nciphers", "nciphers", base.DEC),
    sym_cipher = ProtoField.uint16("tcpcrypt.sym_cipher", "sym_cipher", base.HEX, AEAD_NAMES),
    n_a = ProtoField.bytes("tcpcrypt.n_a", "N_A"),
    n_b = ProtoField.bytes("tcpcrypt.n_b", "N_B"),
    pubkey_len = ProtoField.uint16("tcpcrypt.pubkey_len", "pubkey_len", base.DEC),
    pub_a = ProtoField.bytes("tcpcrypt.pub_a", "Pub_A"),
    pub_b = ProtoField.bytes("tcpcrypt.pub_b", "Pub_B"),
    ignored = ProtoField.bytes("tcpcrypt.ignored", "Ignored"),
    control = ProtoField.uint8("tcpcrypt.control", "control", base.HEX),
    cres = ProtoField.uint8("tcpcrypt.cres", "Reserved (cres)", base.HEX, nil, 0xFE),
    rekey = ProtoField.bool("tcpcrypt.rekey", "Rekey", 8, nil, 0x01),
    clen = ProtoField.uint16("tcpcrypt.clen", "clen", base.DEC),
    ciphertext = ProtoField.bytes("tcpcrypt.ciphertext", "Encrypted payload"),
    tag = ProtoField.bytes("tcpcrypt.tag", "AEAD tag"),
    tep = ProtoField.uint8("tcpcrypt.tep", "Negotiated TEP", base.HEX, TEP_NAMES),
    role = ProtoField.string("tcpcrypt.role", "Sender's ENO role"),
}
tcpcrypt.fields = {
    f.type, f.magic, f.message_len, f.nciphers, f.sym_cipher, f.n_a, f.n_b, f.pubkey_len, f.pub_a, f.pub_b,
    f.ignored, f.control, f.cres, f.rekey, f.clen, f.ciphertext, f.tag, f.tep, f.role,
}

local ef = {
    malformed = ProtoExpert.new("tcpcrypt.malformed", "Malformed tcpcrypt message", expert.group.MALFORMED,
        expert.severity.ERROR),
    rekey = ProtoExpert.new("tcpcrypt.rekey.note", "The sender moves to its next key", expert.group.SEQUENCE,
        expert.severity.CHAT),
}
tcpcrypt.experts = { ef.malformed, ef.rekey }

local fx_stream = Field.new("tcp.stream")
local fx_seq = Field.new("tcp.seq")
local fx_len = Field.new("tcp.len")

local function last(field)
    local all = { field() }
    local fi = all[#all]
    return fi and fi.value
end

-- Per stream and sender: does the first payload start the tcpcrypt stream (true) or is it
-- plain data after an ENO that only one end believed in (false)?
local directions = {}

local function public_key(tvb, offset, stop, tep, tree, field)
    local params = TEPS[tep]
    if params == nil then
        tree:add(field, tvb(offset, stop - offset))
        return stop
    end
    if params.prefixed then
        if stop - offset < 2 then
            tree:add_proto_expert_info(ef.malformed, "no room for pubkey_len")
            return stop
        end
        local total = tvb(offset, 2):uint()
        tree:add(f.pubkey_len, tvb(offset, 2))
        if total <= 2 or offset + total > stop then
            tree:add_proto_expert_info(ef.malformed, string.format("pubkey_len %d does not fit the message", total))
            return stop
        end
        tree:add(field, tvb(offset + 2, total - 2))
        return offset + total
    end
    if stop - offset < params.point then
        tree:add_proto_expert_info(ef.malformed, string.format("%s key needs %d bytes", params.name, params.point))
        return stop
    end
    tree:add(field, tvb(offset, params.point))
    return offset + params.point
end

local function dissect_init(tvb, offset, msg_len, tree, agreement, magic)
    local stop = offset + msg_len
    local is_init1 = magic == INIT1_MAGIC
    local t = tree:add(tcpcrypt, tvb(offset, msg_len), is_init1 and "tcpcrypt Init1" or "tcpcrypt Init2")
    t:add(f.type, tvb(offset, 0), is_init1 and 1 or 2):set_generated()
    t:add(f.tep, tvb(offset, 0), agreement.tep):set_generated()
    t:add(f.role, tvb(offset, 0), is_init1 and "A" or "B"):set_generated()
    t:add(f.magic, tvb(offset, 4))
    t:add(f.message_len, tvb(offset + 4, 4))
    local pos = offset + 8
    if is_init1 then
        local n = tvb(pos, 1):uint()
        t:add(f.nciphers, tvb(pos, 1))
        pos = pos + 1
        if pos + 2 * n + N_LEN > stop then
            t:add_proto_expert_info(ef.malformed, string.format("%d ciphers do not fit message_len", n))
            return
        end
        for i = 1, n do
            t:add(f.sym_cipher, tvb(pos, 2))
            pos = pos + 2
        end
        t:add(f.n_a, tvb(pos, N_LEN))
        pos = public_key(tvb, pos + N_LEN, stop, agreement.tep, t, f.pub_a)
    else
        t:add(f.sym_cipher, tvb(pos, 2))
        t:add(f.n_b, tvb(pos + 2, N_LEN))
        pos = public_key(tvb, pos + 2 + N_LEN, stop, agreement.tep, t, f.pub_b)
    end
    if pos < stop then
        t:add(f.ignored, tvb(pos, stop - pos))
    end
end

local function dissect_frame(tvb, offset, clen, tree)
    local t = tree:add(tcpcrypt, tvb(offset, FRAME_HEADER_LEN + clen), "tcpcrypt Frame")
    t:add(f.type, tvb(offset, 0), 3):set_generated()
    local control = t:add(f.control, tvb(offset, 1))
    control:add(f.cres, tvb(offset, 1))
    control:add(f.rekey, tvb(offset, 1))
    if bit.band(tvb(offset, 1):uint(), 0x01) ~= 0 then
        control:add_proto_expert_info(ef.rekey)
    end
    t:add(f.clen, tvb(offset + 1, 2))
    if clen < TAG_LEN then
        t:add_proto_expert_info(ef.malformed, string.format("clen %d is shorter than the %d-byte tag", clen, TAG_LEN))
        return
    end
    if clen > TAG_LEN then
        t:add(f.ciphertext, tvb(offset + FRAME_HEADER_LEN, clen - TAG_LEN))
    end
    t:add(f.tag, tvb(offset + FRAME_HEADER_LEN + clen - TAG_LEN, TAG_LEN))
    t:append_text(string.format(", %d bytes encrypted", clen - TAG_LEN))
end

-- Walk whole PDUs; ask TCP for more bytes when one is cut (returns the bytes used).
local function dissect_stream(tvb, pinfo, tree, agreement)
    local len = tvb:len()
    local offset = 0
    local names = {}
    local frames = 0
    while offset < len do
        local remaining = len - offset
        local magic = remaining >= 4 and tvb(offset, 4):uint() or nil
        if magic == INIT1_MAGIC or magic == INIT2_MAGIC then
            if remaining < 8 then
                pinfo.desegment_offset = offset
                pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
                break
            end
            local msg_len = tvb(offset + 4, 4):uint()
            local minimum = (magic == INIT1_MAGIC and INIT1_FIXED_LEN or INIT2_FIXED_LEN) + N_LEN
            if msg_len < minimum then
                local t = tree:add(tcpcrypt, tvb(offset, remaining))
                t:add(f.message_len, tvb(offset + 4, 4))
                t:add_proto_expert_info(ef.malformed, string.format("message_len %d shorter than %d", msg_len, minimum))
                offset = len
                break
            end
            if remaining < msg_len then
                pinfo.desegment_offset = offset
                pinfo.desegment_len = msg_len - remaining
                break
            end
            dissect_init(tvb, offset, msg_len, tree, agreement, magic)
            names[#names + 1] = magic == INIT1_MAGIC and "Init1" or "Init2"
            offset = offset + msg_len
        else
            if remaining < FRAME_HEADER_LEN then
                pinfo.desegment_offset = offset
                pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
                break
            end
            local clen = tvb(offset + 1, 2):uint()
            if remaining < FRAME_HEADER_LEN + clen then
                pinfo.desegment_offset = offset
                pinfo.desegment_len = FRAME_HEADER_LEN + clen - remaining
                break
            end
            dissect_frame(tvb, offset, clen, tree)
            frames = frames + 1
            offset = offset + FRAME_HEADER_LEN + clen
        end
    end
    if frames > 0 then
        names[#names + 1] = frames == 1 and "Frame" or string.format("%d Frames", frames)
    end
    if #names > 0 then
        pinfo.cols.protocol = "tcpcrypt"
        pinfo.cols.info = "tcpcrypt " .. table.concat(names, ", ")
    end
    return offset
end

local function heuristic(tvb, pinfo, tree)
    local tcplab_eno = package.loaded.tcplab_eno -- eno.lua's negotiation state
    if tcplab_eno == nil or tvb:len() == 0 then
        return false
    end
    local stream = last(fx_stream)
    if stream == nil then
        return false
    end
    local agreement = tcplab_eno.agreement(stream)
    if agreement == nil or TEPS[agreement.tep] == nil then
        return false
    end
    local key = tostring(stream) .. "/" .. tcplab_eno.sender_key(pinfo)
    local plain = directions[key]
    if plain == nil and last(fx_seq) == 1 and tvb:len() == last(fx_len) then
        -- the first payload of this direction: Init1/Init2, or frames in a resumed session
        local magic = tvb:len() >= 4 and tvb(0, 4):uint() or nil
        plain = not (agreement.resumed or magic == INIT1_MAGIC or magic == INIT2_MAGIC)
        directions[key] = plain
    end
    if plain then
        return false
    end
    dissect_stream(tvb, pinfo, tree, agreement)
    return true
end

function tcpcrypt.init()
    directions = {}
end

tcpcrypt:register_heuristic("tcp", heuristic)
